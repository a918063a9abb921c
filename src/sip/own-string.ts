/**
 * A parsed message's values are slices of one string, its header section (`parseMessage`):
 * V8 keeps a slice of 13 or more characters as a pointer into its parent, so a Call-ID or
 * Contact kept in a binding keeps the whole REGISTER's text alive with it (about half a
 * kilobyte per registration, and more garbage for every scavenge to copy). `ownString`
 * returns the same text backed by a copy of its own: for what outlives the message.
 *
 * The copy is made by a concatenation that V8 must flatten to slice it: a new flat string
 * one character longer than `text`, of which the result is a slice. Strings too short to
 * be slices (V8's SlicedString::kMinLength, 13) are returned as they are.
 */
export function ownString(text: string): string {
  if (text.length < 13) return text;
  return ` ${text}`.slice(1);
}

/**
 * Values many messages repeat (a User-Agent: every client of a deployment sends one of a few)
 * kept once: each distinct text has one owned copy, shared by everyone who keeps it. At most
 * `max` texts are remembered; past that a text is copied but not remembered.
 */
export class StringPool {
  private readonly known = new Map<string, string>();

  constructor(private readonly max = 1_000) {}

  intern(text: string): string {
    const found = this.known.get(text);
    if (found !== undefined) return found;
    const owned = ownString(text);
    if (this.known.size < this.max) this.known.set(owned, owned);
    return owned;
  }
}
