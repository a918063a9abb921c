import { parentPort, workerData } from 'node:worker_threads';
import { type ParseRequest, type ParseResponse, parseForImport } from './import-parse.js';
import type { ContactListLimits } from './xml-parse.js';

/** A worker thread of WorkerParser (import-parse.ts): parses the batches it is sent. */
const { limits } = workerData as { limits: ContactListLimits };

parentPort?.on('message', ({ id, fragments }: ParseRequest) => {
  let response: ParseResponse;
  try {
    response = { id, results: fragments.map((f) => parseForImport(f, limits)) };
  } catch (err) {
    response = { id, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort?.postMessage(response);
});
