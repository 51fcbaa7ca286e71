// A second process for the data bench: a libp2p peer that reads a raw stream to its end and
// answers with one byte, so the sender can time a transfer between two processes. After each
// transfer it prints the CPU time it spent receiving (from the stream's opening to its end).
import { createPeer } from '../../src/net/index.ts';

const peer = await createPeer({ listen: ['/ip4/127.0.0.1/tcp/0'] });
await peer.handle('/dfs/bench-raw/1.0.0', async (stream) => {
  const before = process.cpuUsage();
  let bytes = 0;
  for await (const chunk of stream) bytes += chunk.byteLength;
  const { user, system } = process.cpuUsage(before);
  process.stdout.write(JSON.stringify({ bytes, cpuMs: (user + system) / 1000 }) + '\n');
  stream.send(new Uint8Array([bytes % 256]));
  await stream.close();
});
process.stdout.write(JSON.stringify({ addr: peer.listenAddrs[0] }) + '\n');
process.once('SIGTERM', () => void peer.stop().then(() => process.exit(0)));
