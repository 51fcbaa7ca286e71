import type { Message } from '../../src/raft/index.ts';
import type { RaftTransport } from '../../src/master/raft-driver.ts';

/**
 * An in-process network for Raft drivers: messages are delivered asynchronously (setImmediate),
 * and links can be cut to partition nodes. For driver tests; real masters use libp2p.
 */
export class MemoryNetwork {
  readonly #handlers = new Map<string, (m: Message) => void>();
  readonly #down = new Set<string>();

  transport(id: string): RaftTransport {
    return {
      send: (m) => {
        if (this.#down.has(m.from) || this.#down.has(m.to)) return;
        setImmediate(() => {
          if (!this.#down.has(m.to)) this.#handlers.get(m.to)?.(m);
        });
      },
      onMessage: (handler) => void this.#handlers.set(id, handler),
    };
  }

  /** Cuts every link of `id` (it neither sends nor receives) until heal(id). */
  isolate(id: string): void {
    this.#down.add(id);
  }

  heal(id: string): void {
    this.#down.delete(id);
  }
}
