/** Local-disk I/O helpers shared by the chunk store and the client's downloads: direct (O_DIRECT) writes. */
export { ALIGN_BYTES, alignedBuffers, isEinval, roundUp, writeFully } from './direct-io.ts';
