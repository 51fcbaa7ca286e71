import { afterEach, describe, expect, it } from 'vitest';
import type { MetaClient } from '../../src/client/index.ts';
import { isDfsError } from '../../src/errors/index.ts';
import type { FileEntry } from '../../src/meta/index.ts';
import { startTestCluster, type TestCluster } from '../support/cluster.ts';
import { checkOperations, type Operation } from '../support/linearizability.ts';
import { type FsInput, type FsOutput, fsModel } from '../support/linearizability-models.ts';
import { manifestOf } from '../support/meta-fixtures.ts';
import { SeededBytes } from '../support/prng.ts';
import { testSeed } from '../support/seed.ts';

let current: TestCluster | undefined;
afterEach(async () => {
  await current?.stop();
  current = undefined;
});

const KEYS = ['/k0', '/k1', '/k2', '/k3'];
const CLIENTS = 4;
const OPS_PER_CLIENT = 40;

/** File content as the namespace records it: the value rides in the manifest's blake3 field. */
function manifestFor(content: string) {
  return { ...manifestOf([]), blake3: Buffer.from(content.padEnd(32, '.')).toString('hex') };
}
function contentOf(entry: FileEntry): string {
  return Buffer.from(entry.manifest.blake3, 'hex').toString().replace(/\.+$/, '');
}

/** Runs one operation against the cluster; undefined when its outcome is unknown. */
async function run(c: MetaClient, input: FsInput): Promise<FsOutput | undefined> {
  try {
    switch (input.op) {
      case 'create':
      case 'put':
        await c.write({ op: 'commitFile', path: input.path, manifest: manifestFor(input.content), parents: false, ifAbsent: input.op === 'create' });
        return 'ok';
      case 'stat':
        return contentOf((await c.stat(input.path)) as FileEntry);
      case 'rm':
        await c.write({ op: 'rm', path: input.path, recursive: false });
        return 'ok';
      case 'mv':
        await c.write({ op: 'mv', from: input.from, to: input.to });
        return 'ok';
    }
  } catch (err) {
    if (isDfsError(err, 'ERR_EXISTS')) return 'exists';
    if (isDfsError(err, 'ERR_NOT_FOUND')) return input.op === 'stat' ? null : 'not_found';
    if (isDfsError(err, 'ERR_NO_QUORUM') || isDfsError(err, 'ERR_TIMEOUT')) return undefined; // may or may not have happened
    throw err;
  }
}

function randomInput(rng: SeededBytes, client: number, i: number): FsInput {
  const key = () => KEYS[rng.nextU32() % KEYS.length]!;
  const kind = rng.nextU32() % 10;
  if (kind < 2) return { op: 'create', path: key(), content: `c${client}-${i}` };
  if (kind < 4) return { op: 'put', path: key(), content: `p${client}-${i}` };
  if (kind < 7) return { op: 'stat', path: key() };
  if (kind < 8) return { op: 'rm', path: key() };
  const from = key();
  let to = key();
  while (to === from) to = key();
  return { op: 'mv', from, to };
}

describe('metadata linearizability', () => {
  it('a concurrent history of namespace operations, with the leader SIGKILLed twice, is linearizable', async () => {
    const seed = testSeed('metadata linearizability');
    const t = (current = await startTestCluster());
    const history: Operation<FsInput, FsOutput>[] = [];
    let done = 0;
    let kills = 0;
    // Waiters on the count of finished operations: the chaos schedule is driven by progress.
    const waiters: Array<{ at: number; resolve: () => void }> = [];
    const finished = () => {
      done++;
      for (const w of waiters.filter((w) => done >= w.at)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    };
    const reached = (at: number) => (done >= at ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ at, resolve })));
    const chaos = async () => {
      for (const at of [OPS_PER_CLIENT, 2.5 * OPS_PER_CLIENT]) {
        await reached(at);
        const leader = await t.leaderName();
        await t.cluster.kill(leader, 'SIGKILL');
        kills++;
        await reached(Math.min(done + 15, CLIENTS * OPS_PER_CLIENT));
        await t.cluster.startMaster(leader);
      }
    };
    const worker = (client: number) =>
      t.client(
        async (c) => {
          const rng = new SeededBytes(seed + client);
          for (let i = 0; i < OPS_PER_CLIENT; i++) {
            const input = randomInput(rng, client, i);
            const call = performance.now();
            const output = await run(c, input);
            history.push(output === undefined ? { clientId: client, input, call, output: undefined, return: Infinity } : { clientId: client, input, call, output, return: performance.now() });
            finished();
          }
        },
        { timeoutMs: 4_000 },
      );
    await Promise.all([chaos(), ...Array.from({ length: CLIENTS }, (_, i) => worker(i))]);
    const indeterminate = history.filter((o) => o.output === undefined).length;
    const result = checkOperations(fsModel, history, { timeoutMs: 60_000 });
    console.log(`[linearizability] ${history.length} operations from ${CLIENTS} clients, ${kills} leader kills, ${indeterminate} indeterminate: ${result.result} after ${result.steps} steps`);
    if (result.result === 'illegal') console.log(result.hint);
    expect(kills).toBe(2);
    expect(result.result).toBe('ok');
  });
});
