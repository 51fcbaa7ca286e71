import { createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import type { PrivateKey, PublicKey } from '@libp2p/interface';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import { DfsError } from '../errors/index.ts';

/**
 * Storage receipts: a node's signed statement "I hold chunk <id>, put under fence <fence>".
 *
 * A node signs one for every chunk a put leaves on it (written, or already there), after the
 * put's fence is recorded, with its libp2p identity key (Ed25519; the peer id carries the public
 * key, so anyone can check a receipt knowing only the node's peer id). A put's answer carries one
 * receipt per node of the pipeline; each forwarding node checks that its downstream's answer has
 * one from every later node before it adds its own, and the client and the leader (before a copy
 * counts) check every signature. So a replica
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

/** DER prefixes that wrap a raw 32-byte Ed25519 key as PKCS#8 (private) and SPKI (public). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * A signer for the node whose identity is `privateKey`. An Ed25519 key (every dfs node's) signs
 * on node:crypto with a KeyObject made here once: libp2p's `sign` rebuilds one from JWK on every
 * call, which cost 0.27 ms of the 0.31 ms a receipt took (measured here; Ed25519 signatures are
 * deterministic, so the bytes are the same). Another key type signs through libp2p.
 */
export function receiptSigner(privateKey: PrivateKey): ReceiptSigner {
  const node = peerIdFromPrivateKey(privateKey).toString();
  const keyObject = ed25519PrivateKeyObject(privateKey);
  if (keyObject !== undefined) {
    return async (chunkId, fence) => ({ node, sig: cryptoSign(null, receiptBytes(chunkId, fence, node), keyObject).toString('base64') });
  }
  return async (chunkId, fence) => {
    const sig = await privateKey.sign(receiptBytes(chunkId, fence, node));
    return { node, sig: Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength).toString('base64') };
  };
}

/** node:crypto's form of an Ed25519 libp2p key (raw: 32-byte seed, then the public key); else undefined. */
function ed25519PrivateKeyObject(privateKey: PrivateKey): KeyObject | undefined {
  if (privateKey.type !== 'Ed25519' || privateKey.raw.byteLength < 32) return undefined;
  try {
    return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, privateKey.raw.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
  } catch {
    return undefined;
  }
}

/** Signs one receipt with `privateKey`. */
export function signReceipt(privateKey: PrivateKey, chunkId: string, fence: number): Promise<Receipt> {
  return receiptSigner(privateKey)(chunkId, fence);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/**
 * How to check a peer id's signatures: its Ed25519 key as a node:crypto KeyObject (made once:
 * libp2p's `verify` rebuilds one from JWK on every call), or its libp2p key for another type.
 */
type Verifier = { readonly ed25519: KeyObject } | { readonly key: PublicKey };
/** Verifiers of peer ids seen lately (parsing a peer id costs more than checking a signature). */
const verifiers = new Map<string, Verifier | null>();
const PUBLIC_KEY_CACHE_MAX = 4096;

function verifierOf(node: string): Verifier | undefined {
  let verifier = verifiers.get(node);
  if (verifier === undefined) {
    verifier = null;
    try {
      const key = peerIdFromString(node).publicKey;
      if (key?.type === 'Ed25519' && key.raw.byteLength === 32) {
        verifier = { ed25519: createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, key.raw]), format: 'der', type: 'spki' }) };
      } else if (key !== undefined) {
        verifier = { key };
      }
    } catch {
      verifier = null;
    }
    if (verifiers.size >= PUBLIC_KEY_CACHE_MAX) verifiers.clear();
    verifiers.set(node, verifier);
  }
  return verifier ?? undefined;
}

/**
 * Whether `receipt` is node `receipt.node`'s valid signature for (chunk id, fence). Never throws:
 * anything malformed (a peer id without an embedded key, bad base64, a wrong signature) is false.
 */
export async function verifyReceipt(chunkId: string, fence: number, receipt: Receipt): Promise<boolean> {
  if (typeof receipt?.node !== 'string' || typeof receipt.sig !== 'string' || !BASE64.test(receipt.sig)) return false;
  if (!(Number.isSafeInteger(fence) && fence >= 0)) return false;
  const verifier = verifierOf(receipt.node);
  if (verifier === undefined) return false;
  try {
    const bytes = receiptBytes(chunkId, fence, receipt.node);
    const sig = Buffer.from(receipt.sig, 'base64');
    if ('ed25519' in verifier) return sig.byteLength === 64 && cryptoVerify(null, bytes, verifier.ed25519, sig);
    return (await verifier.key.verify(bytes, sig)) === true;
  } catch {
    return false;
  }
}

/** A put answer without proof from `node` (a peer id): ERR_PROTOCOL, naming it. */
export class ReceiptCheckError extends DfsError {
  /** The first node of the pipeline whose proof is missing or bad. */
  readonly node: string;

  constructor(message: string, node: string) {
    super('ERR_PROTOCOL', message);
    this.name = 'ReceiptCheckError';
    this.node = node;
  }
}

export interface CheckReceiptsOptions {
  /**
   * Check each signature (default true). False checks only the answer's shape: `stored` is the
   * pipeline, and each node has a receipt that looks like one (a non-empty base64 `sig`, of any length); for a
   * hop whose answer is checked in full further on (see OutboundPut).
   */
  readonly verify?: boolean;
}

/**
 * Checks a put answer against the pipeline it was for: `stored` must be exactly `nodes` (in
 * order) and every one of them must have a valid receipt in `receipts`. Returns the receipts of
 * `nodes`, in their order; throws ERR_PROTOCOL (a ReceiptCheckError) naming the first node whose
 * proof is missing or bad (the first node when `stored` is not the pipeline).
 */
export async function checkReceipts(
  chunkId: string,
  fence: number,
  nodes: readonly string[],
  answer: { readonly stored: readonly string[]; readonly receipts: readonly Receipt[] },
  options: CheckReceiptsOptions = {},
): Promise<Receipt[]> {
  if (answer.stored.length !== nodes.length || answer.stored.some((n, i) => n !== nodes[i])) {
    throw new ReceiptCheckError(`put of chunk ${chunkId}: the answer says [${answer.stored.join(', ')}] stored it, the pipeline was [${nodes.join(', ')}]`, nodes[0] ?? '');
  }
  const verify = options.verify ?? true;
  const out: Receipt[] = [];
  for (const node of nodes) {
    const candidates = answer.receipts.filter((r) => r.node === node);
    let good: Receipt | undefined;
    for (const r of candidates) {
      if (verify ? await verifyReceipt(chunkId, fence, r) : looksSigned(r)) {
        good = r;
        break;
      }
    }
    if (good === undefined) {
      throw new ReceiptCheckError(
        `put of chunk ${chunkId}: ${candidates.length === 0 ? 'no receipt' : 'no valid receipt'} from node ${node}, which the answer says stored it`,
        node,
      );
    }
    out.push(good);
  }
  return out;
}

/** Whether `receipt` carries something shaped like a signature (not whether it is one). */
function looksSigned(receipt: Receipt): boolean {
  return typeof receipt?.sig === 'string' && receipt.sig.length > 0 && BASE64.test(receipt.sig);
}
