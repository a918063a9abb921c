/** The store's I/O piece size (store/io-chunk.ts), where the import's files take it from. */
export { IO_CHUNK } from '../store/io-chunk.js';
