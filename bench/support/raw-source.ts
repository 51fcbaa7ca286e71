// The sending side of the data bench's raw yardstick, as its own process (so it runs with the
// V8 flags it is started with): dials the sink at argv[2], sends argv[3] bytes of random data on
// one stream, waits for the sink's answer, and prints the rate, and the CPU time it spent sending
// (from the dial to the answer), as JSON.
import { randomFillSync } from 'node:crypto';
import { createPeer, waitForDrain } from '../../src/net/index.ts';

const [addr, bytesArg] = process.argv.slice(2) as [string, string];
const bytes = Number(bytesArg);
const peer = await createPeer({});
try {
  const stream = await peer.dialProtocol(addr, '/dfs/bench-raw/1.0.0');
  const block = randomFillSync(new Uint8Array(1024 * 1024));
  const started = performance.now();
  const before = process.cpuUsage();
  for (let sent = 0; sent < bytes; sent += block.length) {
    if (!stream.send(block)) await waitForDrain(stream);
  }
  await stream.close();
  for await (const _ of stream) void _; // the sink's one-byte answer: everything arrived
  const seconds = (performance.now() - started) / 1000;
  const { user, system } = process.cpuUsage(before);
  process.stdout.write(JSON.stringify({ mbPerS: bytes / 1e6 / seconds, cpuMs: (user + system) / 1000 }) + '\n');
} finally {
  await peer.stop();
}
