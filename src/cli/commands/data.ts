import { readFileSync } from 'node:fs';
import { mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { FileSink, getFile, type MetaClient, PooledFileReads, putFile } from '../../client/index.ts';
import type { ByteSink } from '../../client/index.ts';
import { type Blake3, loadBlake3 } from '../../chunker/index.ts';
import { DfsError, fromSystemError, isDfsError } from '../../errors/index.ts';
import type { DfsPeer } from '../../net/index.ts';
import { normalizePath } from '../../meta/index.ts';
import { type ClusterOption, withClusterClient } from '../client-context.ts';
import { commandName } from '../command-name.ts';
import { formatBytes } from '../format.ts';
import { type CliIO, info, OutputClosed, type OutputFlags, STDIO_ARG } from '../io.ts';
import { partialPathOf, trackPartial, untrackPartial } from '../partial-files.ts';
import { ProgressBar } from '../progress.ts';
import { youngGarbageCollector } from '../footprint.ts';
import { joinRemote, listAll, localChild, remoteKind, remoteName, targetsFor } from '../remote-tree.ts';

export type DataOptions = ClusterOption & OutputFlags & { force?: boolean; recursive?: boolean };

/** What a command that moves bytes holds while it runs. */
interface Session {
  readonly peer: DfsPeer;
  readonly meta: MetaClient;
  readonly blake3: Blake3;
  readonly options: DataOptions;
  readonly io: CliIO;
}

function rate(bytes: number, ms: number): string {
  return `${formatBytes(bytes / Math.max(ms / 1000, 1e-3))}/s`;
}

function splitArgs(args: readonly string[], command: string, usage: string): { sources: string[]; dest: string } {
  if (args.length < 2) throw new DfsError('ERR_USAGE', `dfs ${command} needs a source and a destination: ${usage}`);
  return { sources: args.slice(0, -1), dest: args[args.length - 1]! };
}

function existsHint(path: string, io: CliIO, command: string): DfsError {
  return new DfsError('ERR_EXISTS', `${path} already exists: use ${commandName(io)} ${command} -f to replace it`);
}

async function localStat(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fromSystemError(err, `cannot read ${path}`);
  }
}

// ---- put ----

/**
 * `dfs put SOURCE... DEST`: local files (or - for stdin; with -r, directory trees) into the
 * cluster, cp-like: into DEST when it is a directory or ends in "/", never over an existing file
 * without -f.
 */
export async function putCommand(args: readonly string[], options: DataOptions, io: CliIO): Promise<void> {
  const { sources, dest } = splitArgs(args, 'put', 'dfs put FILE... /DIR/');
  if (dest === STDIO_ARG) throw new DfsError('ERR_USAGE', 'dfs put stores into the cluster: its last argument is a remote path (/dir/ or /dir/name)');
  if (sources.filter((s) => s === STDIO_ARG).length > 1) throw new DfsError('ERR_USAGE', 'stdin (-) can be read once');
  // Every local source is checked before anything is sent.
  const infos = new Map<string, Stats>();
  for (const local of sources) {
    if (local === STDIO_ARG) continue;
    const st = await localStat(local);
    if (!st) throw new DfsError('ERR_NOT_FOUND', `no such file: ${local}`);
    if (st.isDirectory() && !options.recursive) throw new DfsError('ERR_IS_DIR', `${local} is a directory: use ${commandName(io)} put -r to store it and everything in it`);
    if (!st.isDirectory() && !st.isFile()) throw new DfsError('ERR_INVALID_ARGUMENT', `${local} is not a regular file`);
    infos.set(local, st);
  }
  await withSession(options, io, async (s) => {
    const targets = targetsFor(sources, dest, await remoteKind(s.meta, normalizePath(dest)), {
      command: 'put',
      slashMakesDir: true,
      nameOf: (local) => (local === STDIO_ARG ? 'stdin' : basename(resolve(local))),
      join: joinRemote,
    }).map(normalizePath);
    for (const [i, local] of sources.entries()) {
      const target = targets[i]!;
      if (infos.get(local)?.isDirectory()) await putTree(s, local, target);
      else await putOne(s, local, target, infos.get(local)?.size);
    }
  });
}

async function withSession(options: DataOptions, io: CliIO, fn: (s: Session) => Promise<void>): Promise<void> {
  const blake3 = await loadBlake3();
  await withClusterClient(options, io, (peer, meta) => fn({ peer, meta, blake3, options, io }));
}

/** One local file (or stdin) to `path`. */
async function putOne(s: Session, local: string, path: string, totalBytes: number | undefined): Promise<void> {
  const { io, options } = s;
  const fromStdin = local === STDIO_ARG;
  if (!options.force) {
    const kind = await remoteKind(s.meta, path);
    if (kind === 'file') throw existsHint(path, io, 'put');
    if (kind === 'dir') throw new DfsError('ERR_IS_DIR', `${path} is a directory`);
  }
  // A file is read into reused buffers (no garbage per read); stdin comes as fresh buffers.
  const source = fromStdin ? (io.stdin as AsyncIterable<Uint8Array>) : new PooledFileReads(local);
  const collect = youngGarbageCollector();
  const progress = new ProgressBar({ out: io.stderr, label: `put ${path}`, totalBytes, quiet: options.quiet === true || options.json === true });
  const started = performance.now();
  let r;
  try {
    r = await putFile(source, path, {
      peer: s.peer,
      meta: s.meta,
      blake3: s.blake3,
      // Without -f, the commit itself refuses an existing file (one stored meanwhile too).
      ifAbsent: options.force !== true,
      // The leader checks the quota against the whole file before placing a single chunk.
      ...(totalBytes !== undefined && !fromStdin ? { fileBytes: totalBytes } : {}),
      onProgress: (n) => {
        progress.advance(n);
        collect(n);
      },
    });
  } catch (err) {
    progress.clear();
    throw isDfsError(err, 'ERR_EXISTS') ? existsHint(path, io, 'put') : err;
  }
  progress.finish();
  const ms = performance.now() - started;
  if (options.json) {
    io.stdout.write(JSON.stringify({ path, local: fromStdin ? '-' : local, ...r, ms: Math.round(ms), cpuMs: cpuMs(), peakRssBytes: peakRssBytes() }) + '\n');
    return;
  }
  info(io, options, `stored ${path}: ${formatBytes(r.size)} in ${r.chunks} chunks at ${rate(r.size, ms)}; sent ${formatBytes(r.sentBytes)}, ${formatBytes(r.dedupedBytes)} already stored`);
}

/** A local directory tree to `path` (made, or merged into an existing directory). */
async function putTree(s: Session, local: string, path: string): Promise<void> {
  await s.meta.write({ op: 'mkdir', path, parents: true }).catch((err: unknown) => {
    throw isDfsError(err, 'ERR_EXISTS') ? new DfsError('ERR_EXISTS', `${path} exists and is not a directory`) : err;
  });
  let names: string[];
  try {
    names = (await readdir(local)).sort();
  } catch (err) {
    throw fromSystemError(err, `cannot read ${local}`);
  }
  for (const name of names) {
    const child = join(local, name);
    const st = await localStat(child);
    if (!st) continue; // removed meanwhile (or a dangling link)
    if (st.isDirectory()) await putTree(s, child, joinRemote(path, name));
    else if (st.isFile()) await putOne(s, child, joinRemote(path, name), st.size);
    else info(s.io, s.options, `skipped ${child}: not a regular file or directory`);
  }
}

// ---- get ----

/**
 * `dfs get SOURCE... DEST`: remote files (with -r, directories) to a local path, or to stdout
 * with DEST "-". A local file appears only once every byte is verified (written to
 * DEST.dfs-partial-PID, renamed into place; the partial file is removed however the command
 * ends), and never over an existing file without -f.
 */
export async function getCommand(args: readonly string[], options: DataOptions, io: CliIO): Promise<void> {
  const { sources, dest } = splitArgs(args, 'get', 'dfs get /FILE... LOCAL_DIR/');
  if (sources.includes(STDIO_ARG)) throw new DfsError('ERR_USAGE', 'dfs get reads from the cluster: its sources are remote paths; "-" (stdout) can only be the last argument');
  if (dest === STDIO_ARG) {
    if (options.recursive) throw new DfsError('ERR_USAGE', 'dfs get -r writes a directory tree: give a local directory, not - (stdout)');
    await withSession(options, io, async (s) => {
      for (const remote of sources) await getToStdout(s, remote);
    });
    return;
  }
  const destInfo = await localStat(dest);
  const destKind = destInfo === undefined ? undefined : destInfo.isDirectory() ? 'dir' : 'file';
  const targets = targetsFor(sources, dest, destKind, { command: 'get', slashMakesDir: false, nameOf: remoteName, join: (dir, name) => (name === '' ? dir : join(dir, name)) });
  await withSession(options, io, async (s) => {
    for (const [i, remote] of sources.entries()) {
      const entry = await s.meta.stat(remote);
      if (entry.kind === 'dir') {
        if (!options.recursive) throw new DfsError('ERR_IS_DIR', `${remote} is a directory: use ${commandName(io)} get -r to fetch it and everything in it`);
        await getTree(s, remote, targets[i]!);
      } else {
        await getOne(s, remote, entry.size, targets[i]!);
      }
    }
  });
}

/** A file replaced while we read it is read again from the start, this many times at most. */
const READS_OF_A_CHANGING_FILE = 3;

/** One remote file to the local path `target`. */
async function getOne(s: Session, remote: string, totalBytes: number, target: string, attempt = 1): Promise<void> {
  const { io, options } = s;
  const existing = await localStat(target);
  if (existing?.isDirectory()) throw new DfsError('ERR_IS_DIR', `${target} is a directory`);
  if (existing && !options.force) throw existsHint(target, io, 'get');
  const partial = partialPathOf(target);
  const file = await FileSink.create(partial).catch((err: unknown) => {
    throw fromSystemError(err, `cannot create ${target}`);
  });
  trackPartial(partial);
  const started = performance.now();
  // No forced collections here, unlike put (see youngGarbageCollector): a get's bytes live in
  // its window's pooled buffers, and V8's own schedule measured better on both counts.
  const progress = new ProgressBar({ out: io.stderr, label: `get ${remote}`, totalBytes, quiet: options.quiet === true || options.json === true });
  try {
    const r = await getFile(remote, fileSink(file), { peer: s.peer, meta: s.meta, blake3: s.blake3, onProgress: (n) => progress.advance(n) });
    await file.finish().catch((err: unknown) => {
      throw fromSystemError(err, `cannot write ${partial}`);
    });
    await rename(partial, target).catch((err: unknown) => {
      throw fromSystemError(err, `cannot rename ${partial} to ${target}`);
    });
    untrackPartial(partial);
    progress.finish();
    const ms = performance.now() - started;
    if (options.json) io.stdout.write(JSON.stringify({ path: remote, local: target, size: r.size, chunks: r.chunks, ms: Math.round(ms), cpuMs: cpuMs(), peakRssBytes: peakRssBytes() }) + '\n');
    else info(io, options, `got ${remote} → ${target}: ${formatBytes(r.size)} in ${r.chunks} chunks at ${rate(r.size, ms)}, verified`);
  } catch (err) {
    progress.clear();
    await file.abort();
    await unlink(partial).catch(() => {});
    untrackPartial(partial);
    // Overwritten while we read it: the new version is read whole, from the start.
    if (isDfsError(err, 'ERR_FILE_CHANGED') && attempt < READS_OF_A_CHANGING_FILE) {
      const entry = await s.meta.stat(remote);
      if (entry.kind === 'file') return getOne(s, remote, entry.size, target, attempt + 1);
    }
    throw err;
  }
}

/** A remote directory tree to the local directory `target` (made, or merged into). */
async function getTree(s: Session, remote: string, target: string): Promise<void> {
  await mkdir(target, { recursive: true }).catch((err: unknown) => {
    throw fromSystemError(err, `cannot make the directory ${target}`);
  });
  for await (const entry of listAll(s.meta, remote)) {
    const child = localChild(target, entry.name);
    if (entry.kind === 'dir') await getTree(s, entry.path, child);
    else await getOne(s, entry.path, entry.size, child);
  }
}

async function getToStdout(s: Session, remote: string): Promise<void> {
  const entry = await s.meta.stat(remote);
  if (entry.kind === 'dir') throw new DfsError('ERR_IS_DIR', `${remote} is a directory: see ${commandName(s.io)} ls ${remote}`);
  const progress = new ProgressBar({ out: s.io.stderr, label: `get ${remote}`, totalBytes: entry.size, quiet: s.options.quiet === true || s.options.json === true });
  try {
    await getFile(remote, stdoutSink(s.io), { peer: s.peer, meta: s.meta, blake3: s.blake3, onProgress: (n) => progress.advance(n) });
  } catch (err) {
    progress.clear();
    throw err;
  }
  progress.finish();
}

/** `dfs cat /FILE...`: the files' bytes, verified, to stdout, one after the other. */
export async function catCommand(paths: readonly string[], options: DataOptions, io: CliIO): Promise<void> {
  if (paths.length === 0) throw new DfsError('ERR_USAGE', 'dfs cat needs at least one remote file');
  await withSession({ ...options, quiet: true }, io, async (s) => {
    for (const remote of paths) await getToStdout(s, remote);
  });
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

function isStream(out: CliIO['stdout']): out is CliIO['stdout'] & Writable {
  return typeof (out as Partial<Writable>).cork === 'function' && typeof (out as Partial<Writable>).on === 'function';
}

const sinkErrors = new WeakMap<Writable, { error?: Error }>();

/**
 * getFile's sink for stdout: resolves once the bytes are written (getFile reuses their buffer
 * right after). A reader that went away (EPIPE: `dfs get f - | head`) ends the command with
 * OutputClosed, which main turns into a quiet exit.
 */
function stdoutSink(io: CliIO): ByteSink {
  const out = io.stdout;
  if (!isStream(out)) {
    // An injected writer (tests): copies, since the buffers are reused.
    return { write: async (pieces) => void pieces.forEach((p) => out.write(Buffer.from(p))) };
  }
  // A failed write (a closed pipe) reaches its callback below, as the first error the stream
  // met; without a listener the stream's 'error' event would also end the process.
  let state = sinkErrors.get(out);
  if (!state) {
    const s: { error?: Error } = {};
    out.on('error', (err) => void (s.error ??= err));
    sinkErrors.set(out, s);
    state = s;
  }
  const failed = (err: Error): Error => {
    const first = state.error ?? err;
    return (first as NodeJS.ErrnoException).code === 'EPIPE' ? new OutputClosed() : fromSystemError(first, 'cannot write stdout');
  };
  return {
    // Corked, a chunk's pieces leave as one writev instead of a write each.
    write: (pieces) =>
      new Promise<void>((resolve, reject) => {
        if (pieces.length === 0) return resolve();
        if (state.error) return reject(failed(state.error));
        out.cork();
        pieces.forEach((piece, i) => out.write(piece, i < pieces.length - 1 ? undefined : (err) => (err ? reject(failed(err)) : resolve())));
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
