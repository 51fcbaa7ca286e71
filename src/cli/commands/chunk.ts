import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { CHUNKER_ID, type ChunkerParams, chunkStream, DEFAULT_CHUNKER_PARAMS, loadBlake3, validateChunkerParams } from '../../chunker/index.ts';
import { DfsError, fromSystemError } from '../../errors/index.ts';
import { formatBytes, formatTable, parseBytes } from '../format.ts';
import { type CliIO, STDIO_ARG } from '../io.ts';
import { ProgressBar } from '../progress.ts';

export interface ChunkCommandOptions {
  json?: boolean;
  quiet?: boolean;
  summary?: boolean;
  min?: string;
  avg?: string;
  max?: string;
}

/**
 * `dfs chunk <file|->`: how dfs would cut a local file — every chunk's offset, length and BLAKE3
 * id, and how much of the file deduplicates against itself. Reads the file once, streaming.
 */
export async function chunkCommand(file: string, options: ChunkCommandOptions, io: CliIO): Promise<void> {
  const path = file === STDIO_ARG ? '-' : file;
  const params = chunkerParamsFrom(options);
  const blake3 = await loadBlake3();
  const { source, totalBytes } = await openSource(file, io);
  const progress = new ProgressBar({ out: io.stderr, label: `chunking ${path}`, totalBytes, quiet: options.quiet === true || options.json === true });
  const rows: Array<{ offset: number; length: number; id: string }> = [];
  const seen = new Set<string>();
  let uniqueBytes = 0;
  try {
    for await (const chunk of chunkStream(source, { blake3, params })) {
      rows.push({ offset: chunk.offset, length: chunk.length, id: chunk.id });
      if (!seen.has(chunk.id)) {
        seen.add(chunk.id);
        uniqueBytes += chunk.length;
      }
      progress.advance(chunk.length);
    }
  } catch (err) {
    throw fromSystemError(err, `cannot read ${path}`);
  }
  progress.finish();
  const size = rows.reduce((n, r) => n + r.length, 0);
  const summary = { chunker: CHUNKER_ID, params, hash: `blake3 (${blake3.backend})`, size, chunks: rows.length, uniqueChunks: seen.size, uniqueBytes };
  if (options.json) {
    io.stdout.write(JSON.stringify({ ...summary, chunkList: rows }) + '\n');
    return;
  }
  if (!options.summary && rows.length > 0) {
    io.stdout.write(formatTable(['OFFSET', 'LENGTH', 'CHUNK ID'], rows.map((r) => [String(r.offset), String(r.length), r.id]), new Set([0, 1])));
  }
  const avg = rows.length > 0 ? size / rows.length : 0;
  const saved = size - uniqueBytes;
  io.stdout.write(
    `${formatBytes(size)} in ${rows.length} chunks (avg ${formatBytes(Math.round(avg))}; ${CHUNKER_ID} min ${formatBytes(params.minSize)} avg ${formatBytes(params.avgSize)} max ${formatBytes(params.maxSize)}); ` +
      `${seen.size} unique, ${formatBytes(saved)} deduplicated within the file\n`,
  );
}

function chunkerParamsFrom(options: ChunkCommandOptions): ChunkerParams {
  const size = (flag: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    const bytes = parseBytes(String(text));
    if (bytes === undefined) throw new DfsError('ERR_USAGE', `--${flag} takes a size such as 256KiB or 4MiB, not "${text}"`);
    return bytes;
  };
  // An --avg alone brings min and max along in the defaults' proportions (a quarter, twice).
  const avgSize = size('avg', options.avg, DEFAULT_CHUNKER_PARAMS.avgSize);
  const given = options.avg !== undefined;
  return validateChunkerParams({
    minSize: size('min', options.min, given ? Math.floor(avgSize / 4) : DEFAULT_CHUNKER_PARAMS.minSize),
    avgSize,
    maxSize: size('max', options.max, given ? avgSize * 2 : DEFAULT_CHUNKER_PARAMS.maxSize),
  });
}

async function openSource(path: string, io: CliIO): Promise<{ source: AsyncIterable<Uint8Array>; totalBytes?: number }> {
  if (path === STDIO_ARG) return { source: io.stdin as AsyncIterable<Uint8Array> };
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DfsError('ERR_NOT_FOUND', `no such file: ${path}`);
    throw fromSystemError(err, `cannot read ${path}`);
  }
  if (!info.isFile()) throw new DfsError('ERR_INVALID_ARGUMENT', `${path} is not a regular file`);
  return { source: createReadStream(path, { highWaterMark: 1024 * 1024 }), totalBytes: info.size };
}
