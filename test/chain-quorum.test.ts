import { describe, expect, it } from "vitest";
import {
  createQuorumRpc,
  factsDigest,
  type QuorumMember,
  RpcDisagreementError,
} from "../src/chain/quorum.js";
import {
  type AddressSignatureInfo,
  type RpcPool,
  type SignatureStatusInfo,
  type TokenAccountRead,
  tokenAccountOf,
} from "../src/chain/rpc-pool.js";
import type { TransactionFacts } from "../src/chain/transaction-facts.js";
import { AppError } from "../src/errors.js";

const SIG = "5".repeat(88);

function facts(amount: bigint): TransactionFacts {
  return {
    signature: SIG,
    slot: 100,
    blockTime: 1_700_000_000,
    succeeded: true,
    err: null,
    fee: 5000n,
    feePayer: "payer",
    version: 0,
    accounts: ["payer", "vault"],
    tokenChanges: [
      {
        account: "vault",
        owner: "owner",
        mint: "mint",
        programId: null,
        decimals: 6,
        pre: 0n,
        post: amount,
        delta: amount,
      },
    ],
    solChanges: [],
    memos: ["decentral:escrow:job_1"],
    programs: [],
    tokenInstructions: [],
    innerInstructionsKnown: true,
  };
}

/** An endpoint answering with fixed facts and status, counting its calls. */
function member(
  name: string,
  answer: {
    amount?: bigint | null;
    status?: SignatureStatusInfo | null;
    down?: boolean;
    /** What it says the block time of every slot is (seconds). */
    blockTime?: number;
    /** The slot it says the chain is at. Default 1000. */
    slot?: number;
  },
) {
  const calls = { getTransaction: 0, getSignatureStatuses: 0 };
  const rpc: RpcPool = {
    async getTransaction() {
      calls.getTransaction++;
      if (answer.down) throw new Error("503");
      if (answer.amount === null || answer.amount === undefined) return null;
      return { facts: facts(answer.amount), raw: `{"from":"${name}"}` };
    },
    async getSignatureStatuses(signatures) {
      calls.getSignatureStatuses++;
      if (answer.down) throw new Error("503");
      return signatures.map(() => answer.status ?? null);
    },
    async getSlot() {
      if (answer.down) throw new Error("503");
      return answer.slot ?? 1000;
    },
    async getBlockHeight() {
      return 900;
    },
    async getBlockTime() {
      if (answer.down) throw new Error("503");
      return answer.blockTime ?? 1_700_000_000;
    },
    requestRate: () => 10,
    async getSignaturesForAddress() {
      if (answer.down) throw new Error("503");
      return [];
    },
    async getTokenAccount() {
      if (answer.down) throw new Error("503");
      return { slot: 1000, account: null };
    },
    stats: () => [],
    async close() {},
  };
  return { m: { name, rpc } satisfies QuorumMember, calls };
}

const finalized = (err: unknown = null): SignatureStatusInfo => ({
  signature: SIG,
  slot: 100,
  confirmationStatus: "finalized",
  err,
});

describe("a quorum of RPC endpoints", () => {
  it("digests facts, not their text: equal facts give one digest, a changed amount another", () => {
    expect(factsDigest(facts(5n))).toBe(factsDigest(facts(5n)));
    expect(factsDigest(facts(5n))).not.toBe(factsDigest(facts(6n)));
  });

  it("costs k getTransaction calls when the first k endpoints agree", async () => {
    const a = member("a", { amount: 5n });
    const b = member("b", { amount: 5n });
    const c = member("c", { amount: 5n });
    const rpc = createQuorumRpc({ members: [a.m, b.m, c.m], quorum: 2 });
    const fetched = await rpc.getTransaction(SIG);
    expect(fetched?.facts.tokenChanges[0]?.post).toBe(5n);
    expect([a.calls.getTransaction, b.calls.getTransaction, c.calls.getTransaction]).toEqual([
      1, 1, 0,
    ]);
  });

  it("asks one more endpoint when two disagree and returns what k of them agree on", async () => {
    const liar = member("liar", { amount: 9n });
    const rpc = createQuorumRpc({
      members: [liar.m, member("a", { amount: 5n }).m, member("b", { amount: 5n }).m],
      quorum: 2,
    });
    const fetched = await rpc.getTransaction(SIG);
    expect(fetched?.facts.tokenChanges[0]?.post).toBe(5n);
    expect(fetched?.raw).toBe('{"from":"a"}');
    expect(rpc.quorumStatus().endpoints[0]).toMatchObject({ endpoint: "liar", outvoted: 1 });
  });

  it("throws a disagreement naming every answer when no k endpoints agree", async () => {
    const rpc = createQuorumRpc({
      members: [
        member("liar", { amount: 9n }).m,
        member("down", { down: true }).m,
        member("a", { amount: 5n }).m,
      ],
      quorum: 2,
    });
    const error = await rpc.getTransaction(SIG).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RpcDisagreementError);
    const d = (error as RpcDisagreementError).disagreement;
    expect(d.answers.map((a) => [a.endpoint, a.kind])).toEqual([
      ["liar", "answer"],
      ["down", "error"],
      ["a", "answer"],
    ]);
    expect((error as RpcDisagreementError).code).toBe("rpc_disagreement");
  });

  it("does not call a missing answer a disagreement: one version of the facts short of k is retried", async () => {
    const rpc = createQuorumRpc({
      members: [member("a", { amount: 5n }).m, member("lagging", { amount: null }).m],
      quorum: 2,
    });
    await expect(rpc.getTransaction(SIG)).rejects.toMatchObject({ code: "rpc_unavailable" });
  });

  it("reports a transaction malformed only when k endpoints answered it malformed", async () => {
    const malformed = (name: string): QuorumMember => ({
      name,
      rpc: {
        ...member(name, {}).m.rpc,
        async getTransaction() {
          throw new AppError("malformed_transaction", "meta.fee is not a number");
        },
      },
    });
    const two = createQuorumRpc({ members: [malformed("a"), malformed("b")], quorum: 2 });
    await expect(two.getTransaction(SIG)).rejects.toMatchObject({ code: "malformed_transaction" });
    const one = createQuorumRpc({
      members: [malformed("a"), member("b", { amount: 5n }).m],
      quorum: 2,
    });
    await expect(one.getTransaction(SIG)).rejects.toMatchObject({ code: "rpc_unavailable" });
  });

  it("sets aside an endpoint outvoted three times in a row, and asks it last", async () => {
    const liar = member("liar", { amount: 9n });
    const a = member("a", { amount: 5n });
    const b = member("b", { amount: 5n });
    const rpc = createQuorumRpc({ members: [liar.m, a.m, b.m], quorum: 2, setAsideAfter: 3 });
    for (let i = 0; i < 3; i++) await rpc.getTransaction(SIG);
    expect(rpc.quorumStatus().endpoints[0]).toMatchObject({ setAside: true, outvoted: 3 });
    await rpc.getTransaction(SIG);
    expect(liar.calls.getTransaction).toBe(3);
  });

  it("asks an endpoint that keeps failing after those that answer", async () => {
    const down = member("down", { down: true });
    const a = member("a", { amount: 5n });
    const b = member("b", { amount: 5n });
    const rpc = createQuorumRpc({ members: [down.m, a.m, b.m], quorum: 2 });
    for (let i = 0; i < 5; i++) {
      expect((await rpc.getTransaction(SIG))?.facts.tokenChanges[0]?.post).toBe(5n);
    }
    expect(down.calls.getTransaction).toBe(2);
    expect(a.calls.getTransaction + b.calls.getTransaction).toBe(10);
  });

  describe("with one endpoint slow to answer (a 2 s RPC timeout)", () => {
    const TIMEOUT_MS = 2000;
    /**
     * An endpoint whose answers take `ms`: past the timeout its pool gives up at the timeout, as
     * createRpcPool does; within it, it answers the same facts as the others, late.
     */
    function slow(name: string, ms: number) {
      const m = member(name, { amount: 5n, status: finalized() });
      const late = <T>(call: () => Promise<T>) =>
        new Promise<T>((resolve, reject) =>
          ms > TIMEOUT_MS
            ? setTimeout(() => reject(new Error("timed out")), TIMEOUT_MS)
            : setTimeout(() => resolve(call()), ms),
        );
      const { getTransaction, getSignatureStatuses } = m.m.rpc;
      m.m.rpc.getTransaction = (...args) => late(() => getTransaction(...args));
      m.m.rpc.getSignatureStatuses = (...args) => late(() => getSignatureStatuses(...args));
      return m;
    }

    /** Reads a transaction `n` times, one after the other; the time they took in all (ms). */
    async function reads(rpc: ReturnType<typeof createQuorumRpc>, n: number) {
      const started = performance.now();
      for (let i = 0; i < n; i++) {
        expect((await rpc.getTransaction(SIG))?.facts.tokenChanges[0]?.post).toBe(5n);
      }
      return performance.now() - started;
    }

    it("costs eight reads about one timeout in all when it answers after 3 s", async () => {
      const late = slow("late", 3000);
      const rpc = createQuorumRpc({
        members: [late.m, member("a", { amount: 5n }).m, member("b", { amount: 5n }).m],
        quorum: 2,
      });
      // Each read waited for the slow endpoint's timeout until it had failed twice in a row.
      expect(await reads(rpc, 8)).toBeLessThan(1.5 * TIMEOUT_MS);
    }, 30_000);

    it("costs eight reads about one timeout in all when it answers late, in time", async () => {
      const late = slow("late", 1500);
      const rpc = createQuorumRpc({
        members: [late.m, member("a", { amount: 5n }).m, member("b", { amount: 5n }).m],
        quorum: 2,
      });
      // It never failed, so every read waited 1.5 s for it.
      expect(await reads(rpc, 8)).toBeLessThan(1.5 * TIMEOUT_MS);
    }, 30_000);

    it("takes a poll's statuses from another endpoint when the primary is slow", async () => {
      const late = slow("late", 3000);
      const a = member("a", { status: finalized() });
      const b = member("b", { status: finalized() });
      const rpc = createQuorumRpc({ members: [late.m, a.m, b.m], quorum: 2 });
      const started = performance.now();
      for (let i = 0; i < 6; i++) {
        expect((await rpc.getSignatureStatuses([SIG]))[0]?.confirmationStatus).toBe("finalized");
      }
      expect(performance.now() - started).toBeLessThan(1.5 * TIMEOUT_MS);
    }, 30_000);
  });

  it("takes statuses from one endpoint until final, and cross-checks a finalized one", async () => {
    const confirmed = { ...finalized(), confirmationStatus: "confirmed" as const };
    const a = member("a", { status: confirmed });
    const b = member("b", { status: confirmed });
    const rpc = createQuorumRpc({ members: [a.m, b.m], quorum: 2 });
    expect((await rpc.getSignatureStatuses([SIG]))[0]?.confirmationStatus).toBe("confirmed");
    expect(a.calls.getSignatureStatuses + b.calls.getSignatureStatuses).toBe(1);

    const liar = member("liar", { status: finalized() });
    const honest = member("honest", { status: confirmed });
    const rpc2 = createQuorumRpc({ members: [liar.m, honest.m], quorum: 2 });
    // A lie about finality is capped: nothing is final until k endpoints say so.
    const [status] = await rpc2.getSignatureStatuses([SIG]);
    expect(status?.confirmationStatus).toBe("confirmed");
  });

  it("marks a status disputed when two endpoints state different final outcomes", async () => {
    const rpc = createQuorumRpc({
      members: [
        member("liar", { status: finalized({ InstructionError: [0, { Custom: 1 }] }) }).m,
        member("a", { status: finalized() }).m,
      ],
      quorum: 2,
    });
    const [status] = await rpc.getSignatureStatuses([SIG]);
    expect(status?.confirmationStatus).toBe("confirmed");
    expect((status as { disagreement?: unknown }).disagreement).toMatchObject({
      method: "getSignatureStatuses",
      quorum: 2,
    });
  });

  it("takes the lowest of k slots, so no single endpoint moves the slot forward", async () => {
    const rpc = createQuorumRpc({
      members: [member("down", { down: true }).m, member("a", {}).m, member("b", {}).m],
      quorum: 2,
    });
    expect(await rpc.getSlot()).toBe(1000);
  });

  it("takes the k-th highest slot of the endpoints that answer: one frozen endpoint cannot hold it back", async () => {
    // The drop window runs on this slot: the lowest of k let one endpoint answering an old slot
    // keep a phantom signature from ever being dropped.
    const slotOf = (...slots: number[]) =>
      createQuorumRpc({
        members: slots.map((slot, i) => member(`e${i}`, { slot }).m),
        quorum: 2,
      }).getSlot();
    expect(await slotOf(1000, 5000, 5000)).toBe(5000);
    expect(await slotOf(5000, 1000, 4990)).toBe(4990);
    // Nor can one endpoint move it forward.
    expect(await slotOf(99_999, 5000, 4990)).toBe(5000);
    expect(await slotOf(99_999, 5000)).toBe(5000);
  });

  it("asks an honest endpoint slow once again for the slot: a frozen one does not stay the k-th highest", async () => {
    // Its first answer comes only when the quorum stops waiting for it (past the hedge delay).
    const slowOnce = member("slow-once", { slot: 5000, amount: 5n });
    let slotCalls = 0;
    slowOnce.m.rpc.getSlot = (_commitment, options) => {
      slotCalls++;
      if (slotCalls > 1) return Promise.resolve(5000);
      return new Promise((_, reject) =>
        options?.signal?.addEventListener("abort", () => reject(new Error("stopped")), {
          once: true,
        }),
      );
    };
    const frozen = member("frozen", { slot: 1000, amount: 5n });
    const honest = member("honest", { slot: 5000, amount: 5n });
    const rpc = createQuorumRpc({ members: [slowOnce.m, frozen.m, honest.m], quorum: 2 });
    await rpc.getSlot();
    // Left out of every later read, it left the frozen endpoint's slot as the k-th highest for
    // the life of the process, and the drop window never passed.
    for (let i = 0; i < 3; i++) expect(await rpc.getSlot()).toBe(5000);
    expect(slotCalls).toBe(4);
    // Answering in time again, it is asked first again.
    await rpc.getTransaction(SIG);
    expect(slowOnce.calls.getTransaction).toBe(1);
  });

  it("stops a slow endpoint's token account and block time reads once k others agree", async () => {
    const slow = member("slow", {});
    const stopped: string[] = [];
    const untilStopped = (what: string, signal: AbortSignal | undefined) =>
      new Promise<never>((_, reject) => {
        // Not stopped, it answers after an RPC timeout, holding a request slot until then.
        const timer = setTimeout(() => reject(new Error("timed out")), 3000);
        signal?.addEventListener("abort", () => {
          clearTimeout(timer);
          stopped.push(what);
          reject(new Error("stopped"));
        });
      });
    slow.m.rpc.getTokenAccount = (_address, options) =>
      untilStopped("getTokenAccount", options?.signal);
    slow.m.rpc.getBlockTime = (_slot, options) => untilStopped("getBlockTime", options?.signal);
    // A quorum each: once slow, an endpoint is asked after the others.
    const quorum = () =>
      createQuorumRpc({ members: [slow.m, member("a", {}).m, member("b", {}).m], quorum: 2 });
    expect((await quorum().getTokenAccount("vault")).account).toBeNull();
    expect(await quorum().getBlockTime(100)).toBe(1_700_000_000);
    expect(stopped).toEqual(["getTokenAccount", "getBlockTime"]);
  }, 10_000);

  it("asks others for a status short of final once k endpoints called the signature missing", async () => {
    // A status short of final comes from one endpoint. One answering "confirmed" for a phantom
    // each time it was asked first restarted the drop's wait, and its job waited for ever.
    const confirmed = { ...finalized(), confirmationStatus: "confirmed" as const };
    const a = { status: null as SignatureStatusInfo | null };
    const b = { status: null as SignatureStatusInfo | null };
    const rpc = createQuorumRpc({
      members: [member("a", a).m, member("b", b).m, member("liar", { status: confirmed }).m],
      quorum: 2,
    });
    for (let poll = 0; poll < 6; poll++) {
      expect(await rpc.getSignatureStatuses([SIG]), `poll ${poll}`).toEqual([null]);
    }
    // It lands after all: k endpoints see it.
    a.status = confirmed;
    b.status = confirmed;
    for (let poll = 0; poll < 3; poll++) {
      expect((await rpc.getSignatureStatuses([SIG]))[0]?.confirmationStatus).toBe("confirmed");
    }
    // What the verifier's drop rule counts on (a null is k endpoints' "not found").
    expect(rpc.agreedMisses).toBe(true);
  });

  it("takes a slot's block time only when k endpoints give the same one", async () => {
    // A slot's time is one fact of the cluster. An endpoint dating the finalized slot late would
    // have the ledger call a period read before the chain had finalized its end; one dating it a
    // day early held every nightly run back until its timeout.
    const agreeing = createQuorumRpc({
      members: [
        member("a", { blockTime: 1_700_000_000 }).m,
        member("b", { blockTime: 1_700_000_000 }).m,
      ],
      quorum: 2,
    });
    expect(await agreeing.getBlockTime(1000)).toBe(1_700_000_000);
    for (const other of [1_700_000_060, 1_699_913_600]) {
      const rpc = createQuorumRpc({
        members: [
          member("liar", { blockTime: other }).m,
          member("a", { blockTime: 1_700_000_000 }).m,
        ],
        quorum: 2,
      });
      await expect(rpc.getBlockTime(1000)).rejects.toMatchObject({ code: "rpc_disagreement" });
    }
  });
});

/** A vault's history, newest first: slots with several entries, as a busy vault has. */
const HISTORY: AddressSignatureInfo[] = [50, 50, 48, 47, 47, 47, 45, 44, 40].map((slot, i) => ({
  signature: `sig${i}`,
  slot,
  err: null,
  memo: null,
  blockTime: 1_700_000_000 + slot,
}));

/**
 * An endpoint serving HISTORY (paged by `before`, `until` and `limit` as a node does), leaving
 * out the signatures in `hide`, and reporting `balance`.
 */
function historian(
  name: string,
  opts: {
    hide?: string[];
    /** Listed with another block time. */
    retime?: Record<string, number | null>;
    /** Entries listed in the history (made up, or real ones moved to a false slot). */
    add?: AddressSignatureInfo[];
    account?: TokenAccountRead;
    down?: boolean;
    /** Starts a page this many entries above `before` (Infinity: ignores `before`). */
    relist?: number;
    /** Answers "not found" for these transactions. */
    unknown?: string[];
    /** The finalized slot it answers. Default 1000. */
    finalized?: number;
    /** What it answers for every slot's block time (seconds). */
    blockTime?: number;
  } = {},
) {
  const calls = { list: 0, balance: 0 };
  const added = new Set(opts.add?.map((e) => e.signature));
  const listing = [...HISTORY.filter((e) => !added.has(e.signature)), ...(opts.add ?? [])].sort(
    (a, b) => b.slot - a.slot,
  );
  const rpc: RpcPool = {
    ...member(name, {
      ...(opts.finalized === undefined ? {} : { slot: opts.finalized }),
      ...(opts.blockTime === undefined ? {} : { blockTime: opts.blockTime }),
    }).m.rpc,
    // Each transaction of the history, as every endpoint (honest about transactions) reads it.
    async getTransaction(signature) {
      const e = HISTORY.find((h) => h.signature === signature);
      if (!e || opts.unknown?.includes(signature)) return null;
      return {
        facts: { ...facts(1n), signature, slot: e.slot, blockTime: e.blockTime },
        raw: `{"slot":${e.slot}}`,
      };
    },
    async getSignaturesForAddress(_address, o = {}) {
      calls.list++;
      if (opts.down) throw new Error("503");
      // A node lists nothing before a signature it does not know (as a node's blockstore does).
      const at = o.before ? listing.findIndex((e) => e.signature === o.before) : -1;
      if (o.before && at === -1) return [];
      const from = o.before ? Math.max(0, at + 1 - (opts.relist ?? 0)) : 0;
      const to = o.until ? listing.findIndex((e) => e.signature === o.until) : listing.length;
      return listing
        .slice(from, to)
        .filter((e) => !opts.hide?.includes(e.signature))
        .map((e) =>
          opts.retime && e.signature in opts.retime
            ? { ...e, blockTime: opts.retime[e.signature]! }
            : e,
        )
        .slice(0, o.limit ?? 1000);
    },
    async getTokenAccount() {
      calls.balance++;
      if (opts.down) throw new Error("503");
      return opts.account ?? { slot: 1000, account: null };
    },
  };
  return { m: { name, rpc } satisfies QuorumMember, calls };
}

/**
 * Lists the whole history page by page, as the ledger reader does; from a quorum made afresh for
 * each page when `rpc` is a function (a reader whose process restarted between pages).
 */
async function listAll(rpc: RpcPool | (() => RpcPool), pageSize: number): Promise<string[]> {
  const out: string[] = [];
  let before: string | undefined;
  for (let pages = 0; ; pages++) {
    // A listing that never ends is a failure, not a hung test.
    if (pages > 4 * HISTORY.length) throw new Error(`no end after ${pages} pages`);
    const page = await (typeof rpc === "function" ? rpc() : rpc).getSignaturesForAddress("vault", {
      limit: pageSize,
      ...(before ? { before } : {}),
    });
    out.push(...page.map((e) => e.signature));
    if (page.length < pageSize) return out;
    before = page.at(-1)!.signature;
  }
}

describe("a quorum's listing and balance of a credit vault", () => {
  const all = HISTORY.map((e) => e.signature);

  it("lists a transaction one endpoint leaves out, in its place, at every page size", async () => {
    for (const hide of [["sig4"], ["sig0"], ["sig8"], ["sig2", "sig3", "sig6"]]) {
      for (const pageSize of [1, 2, 3, 4, 1000]) {
        const rpc = createQuorumRpc({
          members: [historian("operator", { hide }).m, historian("honest").m],
          quorum: 2,
        });
        expect(await listAll(rpc, pageSize), `hide ${hide} pageSize ${pageSize}`).toEqual(all);
      }
    }
  });

  it("lists the whole history when one endpoint ignores `before`, restarted or not", async () => {
    // The lying endpoint lists the newest page again, or entries just above the page's start:
    // the union of its entries listed already with the honest page came back short, and the
    // ledger took a short page for the end of the history.
    for (const relist of [Number.POSITIVE_INFINITY, 1, 2, 3]) {
      for (const pageSize of [1, 2, 3, 4, 5, 1000]) {
        const quorum = () =>
          createQuorumRpc({
            members: [historian("operator", { relist }).m, historian("honest").m],
            quorum: 2,
          });
        const what = `relist ${relist} pageSize ${pageSize}`;
        const listed = await listAll(quorum(), pageSize);
        expect(listed, what).toEqual(all);
        const afresh = await listAll(quorum, pageSize);
        // A page start it did not return itself may be listed again, never skipped.
        expect([...new Set(afresh)], what).toEqual(all);
      }
    }
  });

  it("keeps an exact union when each endpoint leaves out a different transaction", async () => {
    const rpc = createQuorumRpc({
      members: [historian("a", { hide: ["sig1"] }).m, historian("b", { hide: ["sig5"] }).m],
      quorum: 2,
    });
    for (const pageSize of [1, 2, 3, 1000]) expect(await listAll(rpc, pageSize)).toEqual(all);
  });

  it("checks an entry one endpoint alone lists against its transaction, so it cannot end the listing early", async () => {
    // Made up, just above the honest page's end: as the next page's `before` it would make the
    // honest node list nothing older.
    const madeUp = { signature: "fakeZ", slot: 48, err: null, memo: null, blockTime: 1 };
    // A real older transaction listed at a false, newer slot: the honest node would go on from
    // its real slot and skip the range between.
    const misdated = { ...HISTORY[7]!, slot: 49, blockTime: 1_700_000_049 };
    for (const add of [[madeUp], [misdated]]) {
      for (const pageSize of [2, 3, 1000]) {
        const rpc = createQuorumRpc({
          members: [historian("operator", { add }).m, historian("honest").m],
          quorum: 2,
        });
        await expect(
          listAll(rpc, pageSize),
          `${add[0]!.signature} ${pageSize}`,
        ).rejects.toMatchObject({ code: "rpc_disagreement" });
      }
    }
  });

  it("refuses a listing that moves a transaction to another block time", async () => {
    const moved = createQuorumRpc({
      members: [historian("operator", { retime: { sig4: 1 } }).m, historian("honest").m],
      quorum: 2,
    });
    await expect(moved.getSignaturesForAddress("vault")).rejects.toMatchObject({
      code: "rpc_disagreement",
    });
    // A time one endpoint leaves out rests on the other alone: the listing gives none (the
    // ledger files the line under its transaction's time once read). One endpoint dated a
    // debit two days early, the other gave no time, and the debit left its period.
    for (const [operator, honest] of [
      [null, 1],
      [1, null],
    ] as const) {
      const blank = createQuorumRpc({
        members: [
          historian("operator", { retime: { sig4: operator } }).m,
          historian("honest", { retime: { sig4: honest } }).m,
        ],
        quorum: 2,
      });
      expect(await blank.getSignaturesForAddress("vault")).toEqual(
        HISTORY.map((e) => (e.signature === "sig4" ? { ...e, blockTime: null } : e)),
      );
    }
  });

  it("asks another endpoint for one that fails; below k answers it is unavailable", async () => {
    const down = historian("down", { down: true });
    const liar = historian("operator", { hide: ["sig4"] });
    const honest = historian("honest");
    const three = createQuorumRpc({ members: [down.m, liar.m, honest.m], quorum: 2 });
    expect(await listAll(three, 1000)).toEqual(all);
    expect([down.calls.list, liar.calls.list, honest.calls.list]).toEqual([1, 1, 1]);
    const two = createQuorumRpc({
      members: [historian("down", { down: true }).m, liar.m],
      quorum: 2,
    });
    await expect(two.getSignaturesForAddress("vault")).rejects.toMatchObject({
      code: "rpc_unavailable",
    });
  });

  it("never leaves out an entry only some endpoints list at or below the finalized slot", async () => {
    // The operator's endpoint leaves out the vault's newest debit and answers "not found" for
    // it: taken for a node that has not seen it yet, the ledger called the history read
    // through the finalized slot's time without it, and the night's run passed.
    const liar = () => historian("operator", { hide: ["sig0"], unknown: ["sig0"] }).m;
    for (const finalized of [50, 1000]) {
      const rpc = createQuorumRpc({
        members: [liar(), historian("honest", { finalized }).m],
        quorum: 2,
      });
      await rpc.getSlot("finalized");
      await expect(rpc.getSignaturesForAddress("vault"), `finalized ${finalized}`).rejects.toThrow(
        /sig0/,
      );
      // Without a finalized slot asked before, the listing asks for one itself.
      const fresh = createQuorumRpc({
        members: [liar(), historian("honest", { finalized }).m],
        quorum: 2,
      });
      await expect(fresh.getSignaturesForAddress("vault")).rejects.toThrow(/sig0/);
    }
    // Above the finalized slot it is the newest, which one node has and another not yet: left
    // for a later read (no read-through time claims it).
    const ahead = createQuorumRpc({
      members: [
        historian("behind", { hide: ["sig0"], unknown: ["sig0"], finalized: 49 }).m,
        historian("ahead", { finalized: 49 }).m,
      ],
      quorum: 2,
    });
    await ahead.getSlot("finalized");
    expect((await ahead.getSignaturesForAddress("vault")).map((e) => e.signature)).toEqual(
      all.slice(1),
    );
  });

  it("counts endpoints, not entries: one endpoint listing a made-up signature twice adds nothing", async () => {
    const madeUp = {
      signature: "fakeZ",
      slot: 50,
      err: null,
      memo: null,
      blockTime: 1_700_000_050,
    };
    const twice = (name: string) => {
      const h = historian(name);
      const rpc: RpcPool = {
        ...h.m.rpc,
        async getSignaturesForAddress(address, o) {
          const page = await h.m.rpc.getSignaturesForAddress(address, o);
          return o?.before ? page : [madeUp, madeUp, ...page];
        },
      };
      return { name, rpc } satisfies QuorumMember;
    };
    const two = createQuorumRpc({ members: [twice("operator"), historian("honest").m], quorum: 2 });
    await expect(two.getSignaturesForAddress("vault")).rejects.toThrow(/twice/);
    const three = createQuorumRpc({
      members: [twice("operator"), historian("honest").m, historian("honestB").m],
      quorum: 2,
    });
    for (const pageSize of [2, 1000]) expect(await listAll(three, pageSize)).toEqual(all);
    expect(three.quorumStatus().endpoints[0]).toMatchObject({ endpoint: "operator", outvoted: 2 });
  });

  it("asks a third endpoint when two place an entry differently, and outvotes the one that differs", async () => {
    // One slot off (or another block time), listed first: every read failed, and the honest
    // third endpoint was never asked.
    const misplaced = { ...HISTORY[0]!, slot: 51 };
    for (const operator of [
      historian("operator", { add: [misplaced] }),
      historian("operator", { retime: { sig4: 1 } }),
    ]) {
      const rpc = createQuorumRpc({
        members: [operator.m, historian("honest").m, historian("honestB").m],
        quorum: 2,
        setAsideAfter: 2,
      });
      for (const pageSize of [3, 1000]) expect(await listAll(rpc, pageSize)).toEqual(all);
      expect(rpc.quorumStatus().endpoints[0]).toMatchObject({
        endpoint: "operator",
        setAside: true,
      });
    }
  });

  it("asks a third endpoint in place of one listing a transaction that is not the vault's", async () => {
    // Listed first, the operator's endpoint added a real transaction that does not touch the
    // vault, at its true slot and time. Every read failed, and the honest third endpoint was
    // never asked.
    const madeUp = {
      signature: "fakeZ",
      slot: 46,
      err: null,
      memo: null,
      blockTime: 1_700_000_046,
    };
    const foreign = { ...madeUp, signature: "otherTx" };
    for (const add of [foreign]) {
      const h = historian("operator", { add: [add] });
      const operator: QuorumMember = {
        name: "operator",
        rpc: {
          ...h.m.rpc,
          async getTransaction(signature, commitment, options) {
            if (signature !== foreign.signature) {
              return h.m.rpc.getTransaction(signature, commitment, options);
            }
            const read = { ...facts(1n), signature, slot: 46, blockTime: 1_700_000_046 };
            return { facts: { ...read, accounts: ["payer", "someoneElse"] }, raw: "{}" };
          },
        },
      };
      // The transaction is real: every endpoint returns it, and it does not name the vault.
      const knowsIt = (m: QuorumMember): QuorumMember => ({
        ...m,
        rpc: { ...m.rpc, getTransaction: operator.rpc.getTransaction },
      });
      const honest = historian("honest");
      const honestB = historian("honestB");
      const rpc = createQuorumRpc({
        members: [operator, knowsIt(honest.m), knowsIt(honestB.m)],
        quorum: 2,
      });
      for (const pageSize of [3, 1000]) {
        expect(await listAll(rpc, pageSize), `${add.signature} ${pageSize}`).toEqual(all);
      }
      expect(honestB.calls.list).toBeGreaterThan(0);
      expect(rpc.quorumStatus().endpoints[0]).toMatchObject({ endpoint: "operator" });
      expect(rpc.quorumStatus().endpoints[0]!.outvoted).toBeGreaterThan(0);
    }
  });

  it("waits, outvoting no one, on an entry k endpoints call not found: a node behind says that of a theft", async () => {
    // A made-up signature and a real debit an honest node has not indexed yet look the same:
    // listed by one endpoint, "not found" from two. Taking the two as proof, the one listing a
    // real theft was outvoted and the theft left out of the vault's history for good.
    const madeUp = {
      signature: "fakeZ",
      slot: 46,
      err: null,
      memo: null,
      blockTime: 1_700_000_046,
    };
    const h = historian("operator", { add: [madeUp] });
    const rpc = createQuorumRpc({
      members: [h.m, historian("honest").m, historian("honestB").m],
      quorum: 2,
    });
    await expect(listAll(rpc, 1000)).rejects.toMatchObject({ code: "rpc_disagreement" });
    expect(rpc.quorumStatus().endpoints[0]!.outvoted).toBe(0);
  });

  it("holds back, at one transaction read, a page of entries only one endpoint lists and no one can read yet", async () => {
    // Entries above the finalized slot that no other endpoint lists and no one can read look
    // like a node a little ahead (a busy vault's node a few seconds ahead lists dozens). Each
    // was read under the quorum before it was held back: a page of them cost thousands of
    // reads, every read. The oldest one unreadable holds back every newer one, unread.
    const fakes = Array.from({ length: 200 }, (_, i) => ({
      signature: `fake${i}`,
      slot: 2000 + i,
      err: null,
      memo: null,
      blockTime: 1_700_002_000 + i,
    }));
    const operator = historian("operator", { add: fakes });
    let reads = 0;
    const counted = (m: QuorumMember): QuorumMember => ({
      ...m,
      rpc: {
        ...m.rpc,
        async getTransaction(signature, commitment, options) {
          reads++;
          return m.rpc.getTransaction(signature, commitment, options);
        },
      },
    });
    for (const members of [
      [counted(operator.m), counted(historian("honest").m), counted(historian("b").m)],
      [counted(operator.m), counted(historian("honest").m)],
    ]) {
      reads = 0;
      const rpc = createQuorumRpc({ members, quorum: 2 });
      await rpc.getSlot("finalized");
      // The history below them is read whole; they wait for the next read.
      expect(await listAll(rpc, 1000)).toEqual(all);
      expect(reads).toBeLessThan(10);
    }
  });

  it("keeps nothing above an entry held back as too new, so the next read lists it", async () => {
    // 2 of 2: the operator's endpoint answers a finalized slot just below a debit (sig2), leaves
    // it and the later sig0/sig1 out, and answers "not found" for the debit only. sig0/sig1
    // were kept above the debit held back; the ledger's next read lists `until` its newest
    // entry (sig0), so the debit was never listed again, even with every endpoint honest.
    for (const pageSize of [2, 3, 1000]) {
      const rpc = createQuorumRpc({
        members: [
          historian("operator", {
            hide: ["sig0", "sig1", "sig2"],
            unknown: ["sig2"],
            finalized: 47,
          }).m,
          historian("honest").m,
        ],
        quorum: 2,
      });
      await rpc.getSlot("finalized");
      const first = await listAll(rpc, pageSize);
      expect(first, `page size ${pageSize}`).toEqual(all.slice(3));
      const honest = createQuorumRpc({
        members: [historian("operator").m, historian("honest").m],
        quorum: 2,
      });
      const next = await honest.getSignaturesForAddress("vault", { until: first[0]! });
      expect(next.map((e) => e.signature)).toEqual(all.slice(0, 3));
    }
  });

  it("asks a third endpoint for a slot's block time when two differ, and outvotes the one that differs", async () => {
    const rpc = createQuorumRpc({
      members: [
        historian("operator", { blockTime: 1_699_827_200 }).m,
        historian("honest").m,
        historian("honestB").m,
      ],
      quorum: 2,
      setAsideAfter: 2,
    });
    for (let i = 0; i < 2; i++) expect(await rpc.getBlockTime(1000)).toBe(1_700_000_000);
    expect(rpc.quorumStatus().endpoints[0]).toMatchObject({
      endpoint: "operator",
      outvoted: 2,
      setAside: true,
    });
    // Set aside, it is asked last: the honest two settle the time without it.
    expect(await rpc.getBlockTime(1000)).toBe(1_700_000_000);
    expect(rpc.quorumStatus().endpoints[0]).toMatchObject({ outvoted: 2 });
  });

  it("takes a token account only when k endpoints report the same mint and amount", async () => {
    const holds = (mint: string, slot: number): TokenAccountRead => ({
      slot,
      account: { programId: "Tokenkeg", mint, amount: 1_000_000n },
    });
    // One endpoint says the vault holds the credit mint; the account really holds another one.
    const liar = historian("operator", { account: holds("USDC", 1002) });
    const honest = historian("honest", { account: holds("FAKE", 1001) });
    const two = createQuorumRpc({ members: [liar.m, honest.m], quorum: 2 });
    await expect(two.getTokenAccount("vault")).rejects.toMatchObject({
      code: "rpc_disagreement",
    });
    const behind = historian("behind", { account: holds("FAKE", 999) });
    const three = createQuorumRpc({ members: [liar.m, honest.m, behind.m], quorum: 2 });
    expect(await three.getTokenAccount("vault")).toEqual(holds("FAKE", 999));
    // Below k answers it is unavailable, not taken from the one that answered.
    const lonely = createQuorumRpc({
      members: [historian("down", { down: true }).m, honest.m],
      quorum: 2,
    });
    await expect(lonely.getTokenAccount("vault")).rejects.toMatchObject({
      code: "rpc_unavailable",
    });
  });
});

describe("a token account's owner under a quorum", () => {
  it("is taken only when k endpoints name the same owner", async () => {
    const owned = (owner: string | null, slot: number): TokenAccountRead => ({
      slot,
      account: { programId: "Tokenkeg", mint: "USDC", amount: 1_000_000n, delegate: null, owner },
    });
    // The vault was given to the attacker; one endpoint still names the escrow authority.
    const liar = historian("operator", { account: owned("escrow", 1002) });
    const honest = historian("honest", { account: owned("attacker", 1001) });
    const two = createQuorumRpc({ members: [liar.m, honest.m], quorum: 2 });
    await expect(two.getTokenAccount("vault")).rejects.toMatchObject({
      code: "rpc_disagreement",
    });
    const behind = historian("behind", { account: owned("attacker", 999) });
    const three = createQuorumRpc({ members: [liar.m, honest.m, behind.m], quorum: 2 });
    expect(await three.getTokenAccount("vault")).toEqual(owned("attacker", 999));
  });

  it("is read from the getAccountInfo answer, null when the answer names none", () => {
    const answer = (owner?: string) => ({
      context: { slot: 7 },
      value: {
        owner: "Tokenkeg",
        data: {
          parsed: {
            type: "account",
            info: { mint: "USDC", tokenAmount: { amount: "5" }, ...(owner ? { owner } : {}) },
          },
        },
      },
    });
    expect(tokenAccountOf(answer("attacker"), "vault").account?.owner).toBe("attacker");
    expect(tokenAccountOf(answer(), "vault").account?.owner).toBeNull();
  });
});
