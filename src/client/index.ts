/** The client side of dfs: metadata (and, later, chunk) operations against a cluster. */
export { MetaClient } from '../meta/meta-client.ts';
export type { MetaClientOptions } from '../meta/meta-client.ts';
export { putFile } from './put.ts';
export type { PutOptions, PutResult } from './put.ts';
export { getFile } from './get.ts';
export type { GetOptions, ByteSink } from './get.ts';
export { PooledFileReads } from './file-source.ts';
export { FileSink } from './file-sink.ts';
export type { ReleasingSource } from './file-source.ts';
