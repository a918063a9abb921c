/**
 * Size of the pieces the contact-list commands read and write files in (characters or
 * bytes). Small enough that each piece, and the string made of it, is an ordinary young
 * object of V8's heap: pieces of 256 KiB and more go to its large-object space, where every
 * one is a fresh mapping of memory the kernel zero-fills on first touch and unmaps after.
 * The import's reading and cutting of a 722 MiB file cost 11.4 CPU-seconds in 256 KiB
 * reads (5 of them the kernel's) and 2.6-3.0 in 64 KiB ones.
 */
export const IO_CHUNK = 64 * 1024;
