import type { PrivateKey, PublicKey } from '@libp2p/interface';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import { DfsError } from '../errors/index.ts';

/**
 * Storage receipts: a node's signed statement "I hold chunk <id>, put under fence <fence>".
 *
 * A node signs one for every chunk a put leaves on it (written, or already there), after the
 * put's fence is recorded, with its libp2p identity key (Ed25519; the peer id carries the public
 * key, so anyone can check a receipt knowing only the node's peer id). A put's answer carries one
 * receipt per node of the pipeline; each forwarding node checks its downstream's receipts before
 * it adds its own, and the client (and the leader, at commit) checks them all again. So a replica
 * counts only on proof from the node itself: a rogue first node cannot claim copies on nodes that
 * never got the bytes. (A node can still sign for bytes it did not keep; scrubbing and verify
 * requests are what catch that. What receipts rule out is one node speaking for another.)
 *
 * Signed bytes, UTF-8: `dfs/receipt/v1\n<chunk id>\n<fence as a decimal integer>\n<node peer id>`.
 * On the wire: `{ node: <peer id>, sig: <base64 of the 64-byte signature> }`.
 */
export const RECEIPT_CONTEXT = 'dfs/receipt/v1';

export interface Receipt {
  /** The peer id of the node that holds the chunk and signed this. */
  readonly node: string;
  /** Base64 of the Ed25519 signature over receiptBytes(chunkId, fence, node). */
  readonly sig: string;
}

/** Signs the receipt of this node for (chunk id, fence). */
export type ReceiptSigner = (chunkId: string, fence: number) => Promise<Receipt>;

const encoder = new TextEncoder();

/** The exact bytes a receipt signs. */
export function receiptBytes(chunkId: string, fence: number, node: string): Uint8Array {
  if (!(Number.isSafeInteger(fence) && fence >= 0)) throw new DfsError('ERR_INVALID_ARGUMENT', `a fence must be a safe integer >= 0, got ${String(fence)}`);
  return encoder.encode(`${RECEIPT_CONTEXT}\n${chunkId}\n${fence}\n${node}`);
}

/** A signer for the node whose identity is `privateKey`. */
export function receiptSigner(privateKey: PrivateKey): ReceiptSigner {
  const node = peerIdFromPrivateKey(privateKey).toString();
  return async (chunkId, fence) => {
    const sig = await privateKey.sign(receiptBytes(chunkId, fence, node));
    return { node, sig: Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength).toString('base64') };
  };
}

/** Signs one receipt with `privateKey`. */
export function signReceipt(privateKey: PrivateKey, chunkId: string, fence: number): Promise<Receipt> {
  return receiptSigner(privateKey)(chunkId, fence);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Public keys of peer ids seen lately (parsing a peer id costs more than checking a signature). */
const publicKeys = new Map<string, PublicKey | null>();
const PUBLIC_KEY_CACHE_MAX = 4096;

function publicKeyOf(node: string): PublicKey | undefined {
  let key = publicKeys.get(node);
  if (key === undefined) {
    try {
      key = peerIdFromString(node).publicKey ?? null;
    } catch {
      key = null;
    }
    if (publicKeys.size >= PUBLIC_KEY_CACHE_MAX) publicKeys.clear();
    publicKeys.set(node, key);
  }
  return key ?? undefined;
}

/**
 * Whether `receipt` is node `receipt.node`'s valid signature for (chunk id, fence). Never throws:
 * anything malformed (a peer id without an embedded key, bad base64, a wrong signature) is false.
 */
export async function verifyReceipt(chunkId: string, fence: number, receipt: Receipt): Promise<boolean> {
  if (typeof receipt?.node !== 'string' || typeof receipt.sig !== 'string' || !BASE64.test(receipt.sig)) return false;
  if (!(Number.isSafeInteger(fence) && fence >= 0)) return false;
  const key = publicKeyOf(receipt.node);
  if (key === undefined) return false;
  try {
    return (await key.verify(receiptBytes(chunkId, fence, receipt.node), Buffer.from(receipt.sig, 'base64'))) === true;
  } catch {
    return false;
  }
}

/**
 * Checks a put answer against the pipeline it was for: `stored` must be exactly `nodes` (in
 * order) and every one of them must have a valid receipt in `receipts`. Returns the receipts of
 * `nodes`, in their order; throws ERR_PROTOCOL naming the first node whose proof is missing or bad.
 */
export async function checkReceipts(
  chunkId: string,
  fence: number,
  nodes: readonly string[],
  answer: { readonly stored: readonly string[]; readonly receipts: readonly Receipt[] },
): Promise<Receipt[]> {
  if (answer.stored.length !== nodes.length || answer.stored.some((n, i) => n !== nodes[i])) {
    throw new DfsError('ERR_PROTOCOL', `put of chunk ${chunkId}: the answer says [${answer.stored.join(', ')}] stored it, the pipeline was [${nodes.join(', ')}]`);
  }
  const out: Receipt[] = [];
  for (const node of nodes) {
    const candidates = answer.receipts.filter((r) => r.node === node);
    let good: Receipt | undefined;
    for (const r of candidates) {
      if (await verifyReceipt(chunkId, fence, r)) {
        good = r;
        break;
      }
    }
    if (good === undefined) {
      throw new DfsError(
        'ERR_PROTOCOL',
        `put of chunk ${chunkId}: ${candidates.length === 0 ? 'no receipt' : 'no valid receipt'} from node ${node}, which the answer says stored it`,
      );
    }
    out.push(good);
  }
  return out;
}
