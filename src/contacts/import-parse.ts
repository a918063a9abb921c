import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { normalizeAor } from '../store/users.js';
import { encodePrepared } from './import-spool.js';
import { prepareList } from './lists.js';
import type { XmlProblem } from './model.js';
import type { UserFragment } from './xml-document.js';
import { type ContactListLimits, parseUserElement } from './xml-parse.js';

/**
 * The parse of an import's `<user>` elements, in this thread or in worker threads. The
 * command's thread reads the file and cuts it into elements (the scanner); parsing and
 * checking each element, the larger part of validation, is what parallelises: batches of
 * elements go to workers, their results come back in file order. A worker returns each
 * list already encoded for the spool (import-spool.ts), with its COPY rows, so what crosses
 * threads is strings and the write phase builds no rows.
 */
export interface ParsedForImport {
  /** The `<user>`'s uri as parsed (sip:...), for messages. */
  user: string;
  /** Its address of record, normalised: the key of the owner lookup. */
  aor: string;
  line: number;
  column: number;
  /** The list in stored form, its sizes and COPY rows (prepareList), as encodePrepared writes them. */
  prepared: string;
}

export type FragmentResult = { ok: true; parsed: ParsedForImport } | { ok: false; errors: XmlProblem[] };

export function parseForImport(fragment: UserFragment, limits: ContactListLimits): FragmentResult {
  const result = parseUserElement(fragment.text, fragment.origin, limits);
  if (!result.ok) return result;
  const list = result.value;
  return {
    ok: true,
    parsed: {
      user: list.user,
      aor: normalizeAor(list.user),
      line: fragment.origin.line,
      column: fragment.origin.column,
      prepared: encodePrepared(prepareList(list)),
    },
  };
}

/** Parses a batch of elements, results in the batch's order. */
export interface FragmentParser {
  parse(fragments: UserFragment[]): Promise<FragmentResult[]>;
  close(): Promise<void>;
}

/** The worker threads' module: built beside this one (dist); absent where the TypeScript sources run. */
const WORKER_MODULE = new URL('./import-parse-worker.js', import.meta.url);

/**
 * count workers, or this thread's parse when count is 0 or there is no built worker module
 * (tests that run the command from its sources: they get the same results, one thread).
 */
export function fragmentParser(count: number, limits: ContactListLimits): FragmentParser {
  return count > 0 && existsSync(fileURLToPath(WORKER_MODULE))
    ? new WorkerParser(count, limits)
    : inlineParser(limits);
}

/** In the calling thread. */
function inlineParser(limits: ContactListLimits): FragmentParser {
  return {
    parse: async (fragments) => fragments.map((f) => parseForImport(f, limits)),
    close: async () => undefined,
  };
}

/** Messages between the pool and its workers. */
export interface ParseRequest {
  id: number;
  fragments: UserFragment[];
}

export interface ParseResponse {
  id: number;
  results?: FragmentResult[];
  error?: string;
}

interface Waiting {
  resolve: (results: FragmentResult[]) => void;
  reject: (err: Error) => void;
}

/**
 * A parse worker's young generation, in MiB (three semi-spaces). A batch's parsed lists and
 * their rows live until the batch is posted: with V8's default of 16 the garbage collector
 * took 36-40% of a worker's CPU in an import of 20,000 x 50 (copying them), with 48 30%.
 */
const WORKER_YOUNG_MB = 48;

/** Worker threads that parse batches, taken in turn. */
class WorkerParser implements FragmentParser {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 0;
  private failure?: Error;
  private closing = false;

  constructor(count: number, limits: ContactListLimits) {
    for (let i = 0; i < count; i++) {
      const worker = new Worker(WORKER_MODULE, {
        workerData: { limits },
        resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_MB },
      });
      worker.on('message', (message: ParseResponse) => this.settle(message));
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => {
        if (code !== 0 && !this.closing) this.fail(new Error(`a parsing worker exited with status ${code}`));
      });
      this.workers.push(worker);
    }
  }

  parse(fragments: UserFragment[]): Promise<FragmentResult[]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const request: ParseRequest = { id, fragments };
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.workers[id % this.workers.length].postMessage(request);
    });
  }

  private settle(message: ParseResponse): void {
    const waiting = this.waiting.get(message.id);
    if (!waiting) return;
    this.waiting.delete(message.id);
    if (message.results) waiting.resolve(message.results);
    else waiting.reject(new Error(`parsing worker failed: ${message.error}`));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const waiting of this.waiting.values()) waiting.reject(err);
    this.waiting.clear();
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
