import {
  Ber,
  type BerReader,
  type BerWriter,
  type Client,
  Control,
  type Entry,
  SearchEntry,
  SearchResponse,
} from 'ldapts';
import {
  decodeSyncDoneValue,
  decodeSyncInfoValue,
  decodeSyncStateValue,
  encodeSyncRequestValue,
  SYNC_DONE_OID,
  SYNC_INFO_OID,
  SYNC_REQUEST_OID,
  SYNC_STATE_OID,
  type SyncDoneValue,
  type SyncInfoValue,
  type SyncStateValue,
} from './content-sync-codec.js';

/**
 * RFC 4533 refreshOnly searches over an ldapts Client.
 *
 * ldapts (8.x) has no Content Synchronization support and three gaps stand in the way:
 * it turns search entries into plain objects without their controls, it parses an unknown
 * response control only into a request control of the same OID, and it rejects the whole
 * operation when an IntermediateResponse (Sync Info) arrives. It also buffers every entry of
 * a search until the end. `ContentSyncSession` closes these gaps on one Client by hooking
 * its message parser: for a search that carries our Sync Request control, response
 * controls are parsed into Sync State / Sync Done controls, IntermediateResponses are
 * decoded, and entries are handed to the caller as they arrive (the socket is paused when
 * the caller falls behind, so memory stays bounded whatever the size of the refresh).
 * These are ldapts internals: `attach` checks they are there and fails loudly if a new
 * ldapts version moved them.
 */

const LDAP_RES_INTERMEDIATE = 0x79;

class SyncRequestControl extends Control {
  constructor(private readonly value: Buffer) {
    // Critical: a server without the control must refuse the search rather than answer it as
    // an ordinary one (RFC 4511 section 4.1.11), which would look like "no changes".
    super(SYNC_REQUEST_OID, { critical: true });
  }

  protected override writeControl(writer: BerWriter): void {
    writer.writeBuffer(this.value, Ber.OctetString);
  }
}

class SyncStateControl extends Control {
  value?: SyncStateValue;
  constructor() {
    super(SYNC_STATE_OID);
  }
  protected override parseControl(reader: BerReader): void {
    this.value = decodeSyncStateValue(reader.buffer);
  }
}

class SyncDoneControl extends Control {
  value?: SyncDoneValue;
  constructor() {
    super(SYNC_DONE_OID);
  }
  protected override parseControl(reader: BerReader): void {
    this.value = decodeSyncDoneValue(reader.buffer);
  }
}

/**
 * RFC 4511 section 4.13: IntermediateResponse ::= [APPLICATION 25] SEQUENCE { responseName [0]
 * LDAPOID OPTIONAL, responseValue [1] OCTET STRING OPTIONAL }. ldapts exports no Message base
 * class to extend; this one never reaches ldapts' own handling (route() takes it).
 */
class IntermediateResponse {
  controls: Control[] = [];
  responseName?: string;
  responseValue?: Buffer;

  constructor(readonly messageId: number) {}

  parse(reader: BerReader): void {
    if (reader.peek() === 0x80) this.responseName = reader.readString(0x80) ?? undefined;
    if (reader.peek() === 0x81) this.responseValue = reader.readString(0x81, true) ?? undefined;
  }
}

interface Message {
  messageId: number;
  controls?: Control[];
}

interface RequestLike {
  controls?: Control[];
}

interface ClientInternals {
  messageParser: {
    _getMessageFromProtocolOperation(
      messageId: number,
      protocolOperation: number,
      reader: BerReader,
      request?: RequestLike,
    ): Message;
    listeners(event: 'message'): ((message: Message) => void)[];
    removeAllListeners(event: 'message'): void;
    on(event: 'message', listener: (message: Message) => void): void;
  };
  messageDetailsByMessageId: Map<string, { message: RequestLike }>;
  socket?: { pause(): void; resume(): void };
}

export type ContentSyncEvent =
  | { kind: 'entry'; state: 'add' | 'modify'; entryUuid: string; entry: Entry }
  /** Entries still there and unchanged (present phase): sync state entries or a syncIdSet. */
  | { kind: 'present'; entryUuids: string[] }
  /** Entries gone from the content (deleted, or moved out of the base or filter). */
  | { kind: 'delete'; entryUuids: string[] };

export interface ContentSyncResult {
  /** The cookie to send next time; undefined when the server sent none. */
  cookie?: Buffer;
  /**
   * RFC 4533 section 3.3: true when deletes were sent explicitly (a delete phase); false when
   * a present phase was used, so every entry neither reported present nor changed is gone.
   */
  refreshDeletes: boolean;
}

interface Sink {
  attributes: string[];
  binary: string[];
  push(event: ContentSyncEvent): void;
  info(value: SyncInfoValue): void;
  done(value: SyncDoneValue | undefined): void;
}

/** Events queued before the socket is paused until the caller catches up. */
const HIGH_WATER = 2000;

export class ContentSyncUnsupportedError extends Error {
  override name = 'ContentSyncUnsupportedError';
}

export class ContentSyncSession {
  private readonly sinks = new Map<Control, Sink>();

  private constructor(private readonly client: Client) {}

  /** Hooks the client's message parser (once per client). */
  static attach(client: Client): ContentSyncSession {
    const internals = client as unknown as ClientInternals;
    const parser = internals.messageParser;
    if (
      typeof parser?._getMessageFromProtocolOperation !== 'function' ||
      !(internals.messageDetailsByMessageId instanceof Map)
    ) {
      throw new ContentSyncUnsupportedError(
        'this ldapts version does not expose the message parser RFC 4533 support hooks into',
      );
    }
    const session = new ContentSyncSession(client);
    const parse = parser._getMessageFromProtocolOperation.bind(parser);
    parser._getMessageFromProtocolOperation = (messageId, op, reader, request) => {
      if (op === LDAP_RES_INTERMEDIATE) {
        const m = new IntermediateResponse(messageId);
        m.parse(reader);
        return m;
      }
      if (!session.sinkFor(request)) return parse(messageId, op, reader, request);
      // ldapts parses a response control of an OID it does not know into the request control
      // of that OID; fresh parsers per message keep one entry's state out of the next.
      const controls = [...(request?.controls ?? []), new SyncStateControl(), new SyncDoneControl()];
      return parse(messageId, op, reader, { ...request, controls });
    };
    const [deliver] = parser.listeners('message');
    parser.removeAllListeners('message');
    parser.on('message', (message) => {
      const request = internals.messageDetailsByMessageId.get(String(message.messageId))?.message;
      const sink = session.sinkFor(request);
      if (sink && session.route(sink, message)) return;
      if (message instanceof IntermediateResponse) return;
      deliver(message);
    });
    return session;
  }

  private sinkFor(request: RequestLike | undefined): Sink | undefined {
    for (const c of request?.controls ?? []) {
      const sink = this.sinks.get(c);
      if (sink) return sink;
    }
    return undefined;
  }

  /** Handles what belongs to a sync search; returns false to let ldapts deliver it. */
  private route(sink: Sink, message: Message): boolean {
    if (message instanceof IntermediateResponse) {
      if (message.responseName === SYNC_INFO_OID && message.responseValue)
        sink.info(decodeSyncInfoValue(message.responseValue));
      return true;
    }
    if (message instanceof SearchResponse) {
      const done = message.controls?.find((c): c is SyncDoneControl => c instanceof SyncDoneControl);
      sink.done(done?.value);
      return false;
    }
    if (message instanceof SearchEntry) {
      const entry = message;
      const state = entry.controls?.find((c): c is SyncStateControl => c instanceof SyncStateControl)?.value;
      if (!state) return true;
      if (state.state === 'present') sink.push({ kind: 'present', entryUuids: [state.entryUuid] });
      else if (state.state === 'delete') sink.push({ kind: 'delete', entryUuids: [state.entryUuid] });
      else {
        sink.push({
          kind: 'entry',
          state: state.state,
          entryUuid: state.entryUuid,
          entry: entry.toObject(sink.attributes, sink.binary),
        });
      }
      return true;
    }
    return false;
  }

  private pause(paused: boolean): void {
    const socket = (this.client as unknown as ClientInternals).socket;
    if (paused) socket?.pause();
    else socket?.resume();
  }

  /**
   * A refreshOnly search (RFC 4533 section 3.3): with a cookie, only what changed since it.
   * Yields batches of events as they arrive; returns the new cookie and the delete mode.
   * A server refusal (e-syncRefreshRequired, an unwilling server, no such control) is thrown
   * as ldapts' ResultCodeError.
   */
  async *refresh(
    base: string,
    search: { filter: string; attributes: string[]; binaryAttributes?: string[] },
    cookie?: Buffer,
  ): AsyncGenerator<ContentSyncEvent[], ContentSyncResult> {
    const control = new SyncRequestControl(encodeSyncRequestValue({ mode: 'refreshOnly', cookie }));
    let queue: ContentSyncEvent[] = [];
    let wake: (() => void) | undefined;
    let paused = false;
    let doneValue: SyncDoneValue | undefined;
    let sawDone = false;
    const notify = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const push = (event: ContentSyncEvent) => {
      queue.push(event);
      if (!paused && queue.length >= HIGH_WATER) {
        paused = true;
        this.pause(true);
      }
      notify();
    };
    this.sinks.set(control, {
      attributes: search.attributes,
      binary: search.binaryAttributes ?? [],
      push,
      info: (value) => {
        // A newCookie, or the end of a phase, carries no entries; syncIdSet does.
        if (value.kind === 'syncIdSet')
          push({ kind: value.refreshDeletes ? 'delete' : 'present', entryUuids: value.syncUuids });
      },
      done: (value) => {
        sawDone = true;
        doneValue = value;
      },
    });
    let settled = false;
    let failure: unknown;
    const finished = this.client
      .search(base, { scope: 'sub', filter: search.filter, attributes: search.attributes }, [control])
      .catch((err: unknown) => {
        failure = err;
      })
      .finally(() => {
        settled = true;
        notify();
      });
    try {
      while (true) {
        if (queue.length > 0) {
          const batch = queue;
          queue = [];
          if (paused) {
            paused = false;
            this.pause(false);
          }
          yield batch;
          continue;
        }
        if (settled) break;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
      await finished;
      if (failure) throw failure;
      if (!sawDone || !doneValue) {
        throw new ContentSyncUnsupportedError('the server ended the sync search without a Sync Done control');
      }
      return { cookie: doneValue.cookie, refreshDeletes: doneValue.refreshDeletes };
    } finally {
      if (paused) this.pause(false);
      this.sinks.delete(control);
    }
  }
}
