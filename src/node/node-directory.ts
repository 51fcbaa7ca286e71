import { peerIdInAddr } from '../net/index.ts';
import type { NodeListEntry } from './control-protocol.ts';

/**
 * The storage nodes this node may dial, as the leader last listed them (heartbeat answers carry
 * the whole list whenever the node's version of it is out of date). Nothing else is ever dialled
 * by a node on a peer's behalf: a put's pipeline names peer ids, resolved here, and a copy the
 * leader asks for goes only to a node listed here.
 */
export class NodeDirectory {
  #version: string | undefined;
  #nodes = new Map<string, readonly string[]>();

  /** The version of the list held; undefined before the first list arrived. */
  get version(): string | undefined {
    return this.#version;
  }

  get size(): number {
    return this.#nodes.size;
  }

  /** Replaces the whole list. */
  replace(version: string | undefined, nodes: readonly NodeListEntry[]): void {
    const next = new Map<string, readonly string[]>();
    for (const { id, addrs } of nodes) next.set(id, [...addrs]);
    this.#nodes = next;
    this.#version = version;
  }

  /** Whether `peerId` is a storage node in the list. */
  knows(peerId: string): boolean {
    return this.#nodes.has(peerId);
  }

  /** The listed addresses of `peerId`, as the leader gave them. */
  addrsOf(peerId: string): readonly string[] | undefined {
    return this.#nodes.get(peerId);
  }

  /**
   * Where to dial `peerId`: its first listed address that names it (one without a /p2p/ part
   * gets /p2p/<peerId> appended; one naming another peer is skipped); undefined when the node
   * is not listed or has no such address.
   */
  addressOf(peerId: string): string | undefined {
    for (const addr of this.#nodes.get(peerId) ?? []) {
      const named = peerIdInAddr(addr);
      if (named === peerId) return addr;
      if (named === undefined && !addr.includes('/p2p/')) return `${addr}/p2p/${peerId}`;
    }
    return undefined;
  }
}
