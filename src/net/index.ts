/**
 * The network layer: every dfs process is a libp2p peer (TCP + Noise + Yamux, optional private
 * network key) with a persistent Ed25519 identity. Protocols exchange length-prefixed frames;
 * request/response protocols send one JSON frame each way, validated by a schema on receipt.
 */
export { createPeer, DfsPeer } from './peer.ts';
export { peerIdInAddr } from './addr.ts';
export type { DialOptions, HandleOptions, PeerOptions, RemotePeer, StreamHandler } from './peer.ts';
export { IDENTITY_FILE_NAME, loadOrCreateIdentity } from './identity.ts';
export { createSwarmKeyFile, formatSwarmKey, noisePrologue, readSwarmKeyFile, SWARM_KEY_BYTES, swarmKeyFromSecret } from './swarm-key.ts';
export {
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_READ_HIGH_WATER_BYTES,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameReader,
  FrameWriter,
  trySendNow,
  waitForDrain,
} from './framing.ts';
export type { FrameOptions, FrameReaderOptions, FrameReaderStats, FrameWriterStats, SignalOptions } from './framing.ts';
export { encodeWire, schema } from './schema.ts';
export type { ArrayOptions, BytesOptions, Infer, NumberOptions, ObjectSchema, OptionalSchema, Schema, StringOptions } from './schema.ts';
export { callRpc, decodeJson, requestOnStream, serveRpc } from './rpc.ts';
export { RpcChannel, RpcChannelPool, serveMuxRpc } from './rpc-mux.ts';
export type { ServeMuxRpcOptions } from './rpc-mux.ts';
export type { CallRpcOptions, RpcContext, RpcHandler, ServeRpcOptions } from './rpc.ts';
export { deadlineSignal, errorFromAbort, raceAbort } from './deadline.ts';
export type { Stream } from '@libp2p/interface';
