import { describe, expect, it } from "vitest";
import { createQuorumRpc, type QuorumMember } from "../src/chain/quorum.js";
import type { AddressSignatureInfo, RpcPool } from "../src/chain/rpc-pool.js";

/**
 * A vault's history under a quorum at getSignaturesForAddress's full page of 1,000: a slot
 * holding more than a page (an operator can land over 1,000 transactions naming the vault in one
 * block, for about 0.005 SOL of fees) must not stop the vault's listing for good. (Entries of one
 * slot on both sides of a page's end, one endpoint leaving one out: chain-quorum.test.ts.)
 */

/** `counts[i]` entries at slot `top - i`, newest first. */
function historyOf(counts: number[], top = 10_000): AddressSignatureInfo[] {
  const out: AddressSignatureInfo[] = [];
  counts.forEach((n, i) => {
    for (let j = 0; j < n; j++) {
      out.push({
        signature: `s${top - i}x${j}`,
        slot: top - i,
        err: null,
        memo: null,
        blockTime: 1_700_000_000,
      });
    }
  });
  return out;
}

/** An endpoint serving `history` as a node pages it, leaving out the signatures in `hide`. */
function historian(name: string, history: AddressSignatureInfo[], hide: string[] = []) {
  const bySig = new Map(history.map((e) => [e.signature, e]));
  const rpc = {
    async getTransaction(signature: string) {
      const e = bySig.get(signature);
      if (!e) return null;
      return {
        facts: {
          signature,
          slot: e.slot,
          blockTime: e.blockTime,
          succeeded: true,
          err: null,
          fee: 5000n,
          feePayer: "payer",
          version: 0,
          accounts: ["payer", "vault"],
          tokenChanges: [],
          solChanges: [],
          memos: [],
          programs: [],
          tokenInstructions: [],
          innerInstructionsKnown: true,
        },
        raw: `{"slot":${e.slot}}`,
      };
    },
    async getSignatureStatuses(signatures: string[]) {
      return signatures.map(() => null);
    },
    async getSlot() {
      return 20_000;
    },
    async getBlockHeight() {
      return 19_000;
    },
    async getBlockTime() {
      return 1_700_000_000;
    },
    requestRate: () => 10,
    async getSignaturesForAddress(
      _address: string,
      o: { before?: string; until?: string; limit?: number } = {},
    ) {
      const at = o.before ? history.findIndex((e) => e.signature === o.before) : -1;
      if (o.before && at === -1) return [];
      const to = o.until ? history.findIndex((e) => e.signature === o.until) : history.length;
      return history
        .slice(o.before ? at + 1 : 0, to)
        .filter((e) => !hide.includes(e.signature))
        .slice(0, o.limit ?? 1000);
    },
    async getTokenAccount() {
      return { slot: 20_000, account: null };
    },
    stats: () => [],
    async close() {},
  } as unknown as RpcPool;
  return { name, rpc } satisfies QuorumMember;
}

/** Every page of 1,000 as the ledger reader asks for them, until a short page. */
async function listAll(rpc: RpcPool | (() => RpcPool), total: number): Promise<string[]> {
  const out: string[] = [];
  let before: string | undefined;
  for (let pages = 0; pages <= total + 2; pages++) {
    const page = await (typeof rpc === "function" ? rpc() : rpc).getSignaturesForAddress("vault", {
      limit: 1000,
      ...(before ? { before } : {}),
    });
    out.push(...page.map((e) => e.signature));
    if (page.length < 1000) return out;
    before = page.at(-1)!.signature;
  }
  throw new Error("no end");
}

describe("a quorum's pages of 1,000 across one slot", () => {
  it("lists a slot holding more than a page when every endpoint pages it alike", async () => {
    const history = historyOf([3, 1200, 2]);
    const all = history.map((e) => e.signature);
    const rpc = createQuorumRpc({
      members: [historian("a", history), historian("b", history)],
      quorum: 2,
    });
    expect(await listAll(rpc, history.length)).toEqual(all);
    // A reader whose process restarted between pages: the page's end is dated by its
    // transaction, and none of its slot counts as listed.
    const afresh = () =>
      createQuorumRpc({ members: [historian("a", history), historian("b", history)], quorum: 2 });
    expect(await listAll(afresh, history.length)).toEqual(all);
    // An entry of the slot one endpoint leaves out past the first page is listed by the other.
    for (const hidden of [all[1003]!, all[1500]!, all[1202]!]) {
      const hiding = createQuorumRpc({
        members: [historian("operator", history, [hidden]), historian("honest", history)],
        quorum: 2,
      });
      expect(await listAll(hiding, history.length), hidden).toEqual(all);
    }
    // Left out inside the first page, the pages end on different entries: the read fails, it
    // does not skip the entries between them.
    const early = createQuorumRpc({
      members: [historian("operator", history, [all[500]!]), historian("honest", history)],
      quorum: 2,
    });
    await expect(listAll(early, history.length)).rejects.toThrow(/leave no page boundary/);
  });
});
