import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { describe, expect, it } from 'vitest';
import { checkReceipts, receiptBytes, receiptSigner, verifyReceipt } from '../../src/net/receipt.ts';

/**
 * Review of 3e9f283 (receipts signed and checked with cached node:crypto KeyObjects): the bytes
 * must be libp2p's own Ed25519 signatures (a leader or client on the old code checks them), a
 * cached verifier must never accept another node's signature, and a forwarding node's shape-only
 * check must not pass off a receipt as verified.
 */
const ID = 'cd'.repeat(32);

describe('review: receipts with cached KeyObjects', () => {
  it('signs exactly what libp2p signs, and each peer id verifies only its own key', async () => {
    const [a, b] = [await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519')];
    const [idA, idB] = [peerIdFromPrivateKey(a).toString(), peerIdFromPrivateKey(b).toString()];
    for (let fence = 0; fence < 5; fence++) {
      const r = await receiptSigner(a)(ID, fence);
      expect(r.node).toBe(idA);
      const libp2pSig = await a.sign(receiptBytes(ID, fence, idA));
      expect(Buffer.from(r.sig, 'base64').equals(Buffer.from(libp2pSig))).toBe(true);
      expect(await a.publicKey.verify(receiptBytes(ID, fence, idA), Buffer.from(r.sig, 'base64'))).toBe(true);
      expect(await verifyReceipt(ID, fence, r)).toBe(true);
      // Both verifiers cached now: A's signature never passes as B's, nor for another fence or chunk.
      expect(await verifyReceipt(ID, fence, await receiptSigner(b)(ID, fence))).toBe(true);
      expect(await verifyReceipt(ID, fence, { node: idB, sig: r.sig })).toBe(false);
      expect(await verifyReceipt(ID, fence + 1, r)).toBe(false);
      expect(await verifyReceipt('ef'.repeat(32), fence, r)).toBe(false);
    }
  });

  it('a shape-only check (a forwarding node) passes a forged receipt on; the full check refuses it', async () => {
    const a = await generateKeyPair('Ed25519');
    const idA = peerIdFromPrivateKey(a).toString();
    const forged = { node: idA, sig: 'A'.repeat(86) + '==' };
    const answer = { stored: [idA], receipts: [forged] };
    await expect(checkReceipts(ID, 1, [idA], answer, { verify: false })).resolves.toEqual([forged]);
    await expect(checkReceipts(ID, 1, [idA], answer)).rejects.toMatchObject({ code: 'ERR_PROTOCOL', node: idA });
    // No receipt at all fails even the shape check.
    await expect(checkReceipts(ID, 1, [idA], { stored: [idA], receipts: [] }, { verify: false })).rejects.toMatchObject({ node: idA });
  });
});
