import type { Logger } from 'pino';
import type { RegistrationBinding, RegistrationRepository } from '../store/registrations.js';
import type { Binding, LocationTable } from './location.js';

/**
 * Mirrors a front-end's bindings into the pool's shared registrations table, so every
 * front-end can find every endpoint. Writes are batched (one multi-row statement per tick)
 * to keep the database off the REGISTER path; a binding reached only over this server's
 * connection is published with a Path through this server (its flow route), so another
 * front-end relays requests for it here (RFC 5626 5.3 flow tokens, RFC 3327 Path).
 */
export class LocationMirror {
  private readonly dirty = new Map<string, Binding | null>();
  private flushing?: Promise<void>;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly location: LocationTable,
    private readonly registrations: RegistrationRepository,
    private readonly serverId: string,
    private readonly flowRoute: (flowId: string) => string,
    private readonly log: Logger,
    private readonly intervalMs = 100,
  ) {
    location.on('changed', (b: Binding, removed: boolean) => this.mark(b, removed));
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  /** Bindings of the AOR held by other front-ends (unexpired), as routable bindings. */
  async remote(aor: string): Promise<Binding[]> {
    const rows = await this.registrations.listBindings(aor);
    return rows.filter((r) => r.serverId !== this.serverId).map(toBinding);
  }

  /** Is the AOR signed in anywhere in the pool? Here from the local table, elsewhere from the store. */
  async signedInAnywhere(aor: string): Promise<boolean> {
    if (this.location.lookup(aor).length > 0) return true;
    return (await this.remote(aor)).length > 0;
  }

  async flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    if (this.dirty.size === 0) return;
    const batch = [...this.dirty.entries()];
    this.dirty.clear();
    this.flushing = this.write(batch)
      .catch((err: unknown) => {
        this.log.warn({ err }, 'could not mirror registrations; retrying');
        for (const [k, v] of batch) if (!this.dirty.has(k)) this.dirty.set(k, v);
      })
      .finally(() => {
        this.flushing = undefined;
      });
    return this.flushing;
  }

  /** Shutdown: this server's bindings leave the pool's table. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
    await this.registrations.removeForServer(this.serverId);
  }

  private mark(b: Binding, removed: boolean): void {
    this.dirty.set(`${b.aor}\n${b.contact}`, removed ? null : b);
  }

  private async write(batch: Array<[string, Binding | null]>): Promise<void> {
    const upserts: Binding[] = [];
    for (const [key, b] of batch) {
      if (b) upserts.push(b);
      else {
        const [aor, contact] = key.split('\n');
        await this.registrations.removeBinding(aor, contact, this.serverId);
      }
    }
    if (upserts.length === 0) return;
    await this.registrations.upsertBindings(
      upserts.map((b) => ({
        aor: b.aor,
        contact: b.contact,
        instanceId: b.instanceId ?? null,
        callId: b.callId,
        cseq: b.cseq,
        expiresAt: new Date(b.expiresAt),
        q: b.q,
        userAgent: b.userAgent,
        serverId: this.serverId,
        flowId: b.flowId ?? '',
        path: [...(b.flowId ? [this.flowRoute(b.flowId)] : []), ...b.path].join(',') || null,
      })),
    );
  }
}

function toBinding(r: RegistrationBinding): Binding {
  return {
    aor: r.aor,
    contact: r.contact,
    instanceId: r.instanceId ?? undefined,
    callId: r.callId,
    cseq: r.cseq,
    expiresAt: new Date(r.expiresAt).getTime(),
    q: r.q,
    userAgent: r.userAgent,
    serverId: r.serverId,
    path: r.path ? splitPath(r.path) : [],
    flowOnly: false,
  };
}

/** Path values were joined with commas; commas inside <...> belong to a URI. */
function splitPath(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '<') depth++;
    else if (c === '>') depth--;
    else if (c === ',' && depth === 0) {
      out.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  const last = text.slice(start).trim();
  if (last) out.push(last);
  return out;
}
