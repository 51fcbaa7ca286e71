import { join } from 'node:path';
import type { ChunkId } from '../chunker/index.ts';

/**
 * Where things live in a store's directory:
 *   chunks/ab/cd/<id>   payload files, sharded by the first four hex digits (65,536 leaf dirs)
 *   tmp/                files being written; swept at open, never listed
 *   index/              classic-level: per-chunk size and times, and the clean-shutdown mark
 *   quarantine/         chunk files found corrupt or unreadable (<id>.<ms>.<n>), never served,
 *                       removed after a retention period
 */
export class StoreLayout {
  readonly root: string;
  readonly chunksDir: string;
  readonly tmpDir: string;
  readonly indexDir: string;
  readonly quarantineDir: string;

  constructor(root: string) {
    this.root = root;
    this.chunksDir = join(root, 'chunks');
    this.tmpDir = join(root, 'tmp');
    this.indexDir = join(root, 'index');
    this.quarantineDir = join(root, 'quarantine');
  }

  shardDirs(id: ChunkId): [outer: string, inner: string] {
    const outer = join(this.chunksDir, id.slice(0, 2));
    return [outer, join(outer, id.slice(2, 4))];
  }

  chunkPath(id: ChunkId): string {
    return join(this.shardDirs(id)[1], id);
  }
}
