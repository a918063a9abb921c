/**
 * Size of the pieces files are read and written in (characters or bytes) by the contact-list
 * commands, and of the CopyData messages COPY sends to PostgreSQL (store/postgres.ts). Small
 * enough that each piece, and the string or buffer made of it, is an ordinary young object
 * of V8's heap: pieces of 256 KiB and more go to its large-object space, where every one is
 * a fresh mapping of memory the kernel zero-fills on first touch and unmaps after. The
 * import's reading and cutting of a 722 MiB file cost 11.4 CPU-seconds in 256 KiB reads (5
 * of them the kernel's) and 2.6-3.0 in 64 KiB ones.
 */
export const IO_CHUNK = 64 * 1024;
