/** The peer id at the end of a multiaddr (`/.../p2p/<id>`), or undefined when there is none. */
export function peerIdInAddr(addr: string): string | undefined {
  return /\/p2p\/([^/]+)$/.exec(addr)?.[1];
}
