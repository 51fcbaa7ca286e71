import type { Blake3 } from '../../src/chunker/index.ts';
import { type MetaClient, putFile } from '../../src/client/index.ts';
import type { DfsPeer } from '../../src/net/index.ts';
import { type ContentCatalog, contentSource } from './content.ts';
import { chunkPath, deleteChunkFile } from './disk.ts';
import type { Procs } from './procs.ts';

export interface Sabotage {
  /** Every copy of a chunk of this file is gone from disk. */
  lost?: string;
  /** A file the workload never wrote is here. */
  cameBack?: string;
  /** This file was removed by no operation of the history. */
  vanished?: string;
}

/**
 * `--self-test`: after the faults heal and before the checks, the harness breaks the cluster
 * behind the workload's back, so that the checks must fail: every copy of one chunk of one file
 * is deleted from disk (data lost), and a file the workload never wrote is put where none is
 * (something that was removed comes back), and a file is removed by no operation of the history
 * (its acknowledged content is lost). A run with --self-test passes only if the checks catch all
 * three. Returns the paths.
 */
export async function sabotage(o: { procs: Procs; meta: MetaClient; peer: DfsPeer; blake3: Blake3; catalog: ContentCatalog; paths: readonly string[] }): Promise<Sabotage> {
  const out: Sabotage = {};
  for (const path of o.paths) {
    const entry = await o.meta.stat(path).catch(() => undefined);
    if (out.lost && !out.vanished && entry?.kind === 'file') {
      await o.meta.write({ op: 'rm', path, recursive: false });
      out.vanished = path;
      console.log(`[self-test] removed ${path} behind the workload's back`);
      continue;
    }
    if (!out.lost && entry?.kind === 'file' && entry.manifest.chunks.length > 0) {
      const [id] = entry.manifest.chunks[0]!;
      for (const node of o.procs.nodes) await deleteChunkFile(chunkPath(o.procs.dirOf(node), id));
      out.lost = path;
      console.log(`[self-test] deleted every copy of chunk ${id.slice(0, 16)} of ${path}`);
    }
    if (!out.cameBack && entry === undefined) {
      const content = o.catalog.make([[0x5e1f7e57, 12_345]]);
      await putFile(contentSource(content.segments), path, { peer: o.peer, meta: o.meta, blake3: o.blake3 });
      out.cameBack = path;
      console.log(`[self-test] put ${path} behind the workload's back`);
    }
    if (out.lost && out.cameBack && out.vanished) break;
  }
  return out;
}
