import { readFileSync } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Writable } from 'node:stream';
import { FileSink, getFile, PooledFileReads, putFile } from '../../client/index.ts';
import type { ByteSink } from '../../client/index.ts';
import { loadBlake3 } from '../../chunker/index.ts';
import { DfsError, fromSystemError } from '../../errors/index.ts';
import { type ClusterOption, withClusterClient } from '../client-context.ts';
import { formatBytes } from '../format.ts';
import { type CliIO, STDIO_ARG } from '../io.ts';
import { ProgressBar } from '../progress.ts';
import { youngGarbageCollector } from '../footprint.ts';


function rate(bytes: number, ms: number): string {
  return `${formatBytes(bytes / Math.max(ms / 1000, 1e-3))}/s`;
}

/** `dfs put <local|-> <remote>`: a trailing "/" on remote keeps the local file's name. */
export async function putCommand(local: string, remote: string, options: ClusterOption & { json?: boolean }, io: CliIO): Promise<void> {
  const fromStdin = local === STDIO_ARG;
  let totalBytes: number | undefined;
  if (!fromStdin) {
    const info = await stat(local).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ENOENT' ? new DfsError('ERR_NOT_FOUND', `no such file: ${local}`) : fromSystemError(err, `cannot read ${local}`);
    });
    if (!info.isFile()) throw new DfsError('ERR_INVALID_ARGUMENT', `${local} is not a regular file`);
    totalBytes = info.size;
  }
  const path = remote.endsWith('/') ? `${remote}${fromStdin ? 'stdin' : basename(local)}` : remote;
  // A file is read into reused buffers (no garbage per read); stdin comes as fresh buffers.
  const source = fromStdin ? (io.stdin as AsyncIterable<Uint8Array>) : new PooledFileReads(local);
  const collect = youngGarbageCollector();
  const progress = new ProgressBar({ out: io.stderr, label: `put ${path}`, ...(totalBytes !== undefined ? { totalBytes } : {}) });
  const started = performance.now();
  const r = await withClusterClient(options, io, async (peer, meta) => putFile(source, path, { peer, meta, blake3: await loadBlake3(), onProgress: (n) => { progress.advance(n); collect(n); } }));
  progress.finish();
  const ms = performance.now() - started;
  if (options.json) {
    io.stdout.write(JSON.stringify({ path, ...r, ms: Math.round(ms), cpuMs: cpuMs(), peakRssBytes: peakRssBytes() }) + '\n');
    return;
  }
  io.stdout.write(`stored ${path}: ${formatBytes(r.size)} in ${r.chunks} chunks at ${rate(r.size, ms)}; sent ${formatBytes(r.sentBytes)}, ${formatBytes(r.dedupedBytes)} already stored\n`);
}

/** `dfs get <remote> <local|->`: a local file appears only once every byte is verified. */
export async function getCommand(remote: string, local: string, options: ClusterOption & { json?: boolean }, io: CliIO): Promise<void> {
  const toStdout = local === STDIO_ARG;
  let target = local;
  if (!toStdout && (await stat(local).then((s) => s.isDirectory(), () => false))) target = join(local, basename(remote));
  const partial = `${target}.dfs-partial-${process.pid}`;
  const file = toStdout
    ? undefined
    : await FileSink.create(partial).catch((err: unknown) => {
        throw fromSystemError(err, `cannot create ${target}`);
      });
  const sink = file ? fileSink(file) : stdoutSink();
  const started = performance.now();
  const collect = youngGarbageCollector();
  let progress: ProgressBar | undefined;
  try {
    const r = await withClusterClient(options, io, async (peer, meta) => {
      const entry = await meta.stat(remote);
      progress = new ProgressBar({ out: io.stderr, label: `get ${remote}`, ...(entry.kind === 'file' ? { totalBytes: entry.size } : {}) });
      return getFile(remote, sink, { peer, meta, blake3: await loadBlake3(), onProgress: (n) => { progress?.advance(n); collect(n); } });
    });
    progress?.finish();
    if (file) {
      await file.finish().catch((err: unknown) => {
        throw fromSystemError(err, `cannot write ${partial}`);
      });
      await rename(partial, target);
      const ms = performance.now() - started;
      if (options.json) io.stdout.write(JSON.stringify({ path: remote, local: target, size: r.size, chunks: r.chunks, ms: Math.round(ms), cpuMs: cpuMs(), peakRssBytes: peakRssBytes() }) + '\n');
      else io.stdout.write(`got ${remote} → ${target}: ${formatBytes(r.size)} in ${r.chunks} chunks at ${rate(r.size, ms)}, verified\n`);
    }
  } catch (err) {
    if (file) {
      await file.abort();
      await unlink(partial).catch(() => {});
    }
    throw err;
  }
}

/** getFile's sink for a local file: resolves once the bytes are staged or written. */
function fileSink(file: FileSink): ByteSink {
  return {
    write: (pieces) =>
      file.write(pieces).catch((err: unknown) => {
        throw fromSystemError(err, `cannot write ${file.path}`);
      }),
  };
}

/** getFile's sink for stdout: resolves once the bytes are written (getFile reuses their buffer right after). */
function stdoutSink(): ByteSink {
  const out: Writable = process.stdout;
  // A failed write (a closed pipe) reaches its callback below, as the first error the stream
  // met; without a listener the stream's 'error' event would also end the process.
  let outError: Error | undefined;
  out.on('error', (err) => void (outError ??= err));
  return {
    // Corked, a chunk's pieces leave as one writev instead of a write each.
    write: (pieces) =>
      new Promise<void>((resolve, reject) => {
        if (pieces.length === 0) return resolve();
        out.cork();
        pieces.forEach((piece, i) => out.write(piece, i < pieces.length - 1 ? undefined : (err) => (err ? reject(fromSystemError(outError ?? err, 'cannot write stdout')) : resolve())));
        out.uncork();
      }),
  };
}

/** CPU time this process used so far (user + system, every thread, start-up included), in ms: what the command cost the client. */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return Math.round((user + system) / 1000);
}

/**
 * This process's peak resident memory. From /proc's VmHWM where there is one: getrusage's
 * maxRSS survives fork and exec, so a child of a big process would report its parent's peak.
 */
function peakRssBytes(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}
