import { describe, expect, it } from "vitest";
import { ESCROW_PENDING_MS } from "../src/ledger/escrow-scan.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { type EscrowRun, ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { edgeAfter, moveClockTo } from "./support/chain-clock.js";
import { nightlyOver } from "./support/nightly-window.js";
import { type AdversaryHarness, useAdversaryHarness } from "./support/operator.js";

const log = createLogger({ level: "silent" });

/**
 * A nightly run scans the escrow vault's history from before its window to now before it
 * judges its jobs, and again after the vaults' read (for payouts made meanwhile). The second
 * scan listed the whole range again (on a store of 48,000 jobs over 77,000 jobs of chain history,
 * 157 pages of 1,000 entries each time: 100 s of a 257 s run of a window with no job) and
 * fetched again each transaction the first had read and not kept.
 */

/** The ledger side's RPC, counting what the escrow vault's listings answered and each fetch. */
function counting(h: AdversaryHarness, escrowVault: string) {
  const listedEscrow: string[] = [];
  const fetched = new Map<string, number>();
  const rpc = new Proxy(h.rpc, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver);
      if (key === "getSignaturesForAddress") {
        return async (address: string, ...rest: unknown[]) => {
          const page = await (value as (...a: unknown[]) => Promise<{ signature: string }[]>).call(
            target,
            address,
            ...rest,
          );
          if (address === escrowVault) listedEscrow.push(...page.map((e) => e.signature));
          return page;
        };
      }
      if (key === "getTransaction") {
        return (signature: string, ...rest: unknown[]) => {
          fetched.set(signature, (fetched.get(signature) ?? 0) + 1);
          return (value as (...a: unknown[]) => unknown).call(target, signature, ...rest);
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { rpc, listedEscrow, fetched };
}

describe("a nightly run's escrow scans", () => {
  const h = useAdversaryHarness({ chain: { slotMs: 100, finalitySlots: 25 } });

  it("list each escrow entry once and read a transaction under a window job's memo once, though the run scans before its jobs and again after the vaults' read", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const escrowVault = c.profile.escrowVault;
    if (escrowVault === null) throw new Error("the localnet profile names an escrow vault");
    const from = edgeAfter(h, 500);
    const plans = [h.op.plan({ keyIndex: 1 }), h.op.plan({ keyIndex: 1 })];
    for (const plan of plans) c.record(plan, h.op.honestJob(plan));
    // Anyone may send a unit into escrow under a job's memo: read, and not kept (no payout).
    const wallet = h.op.createTokenAccount(h.op.attacker.address, h.op.accounts.mint, 10n);
    const deposit = h.op.send([
      h.op.transfer(wallet, escrowVault, 1n, { authority: h.op.attacker.address }),
      h.op.memo(`decentral:settle:${plans[0]!.jobId}`),
    ]).signature;
    const to = edgeAfter(h, 500);
    moveClockTo(h, to, h.world.chain.finalitySlots * h.world.chain.slotMs + 3_000);

    const seen = counting(h, escrowVault);
    const run = await nightlyOver(h, c, {
      from,
      to,
      vaults: [plans[0]!.vault],
      timeoutMs: 60_000,
      rpc: seen.rpc,
      now: () => h.op.now(),
    });
    expect(run).toMatchObject({ outcome: "verified", exitCode: 0, reason: null });
    expect(run.byVerdict.verified).toBe(2);
    // The jobs' locks and settlements and the deposit, each listed by one scan only.
    expect(seen.listedEscrow).toEqual(expect.arrayContaining([deposit]));
    expect(seen.listedEscrow.length).toBe(new Set(seen.listedEscrow).size);
    expect(seen.fetched.get(deposit)).toBe(1);
  });

  it.each([
    ["", 0],
    [", by a host whose clock is six minutes behind", 6 * 60_000],
  ])(
    "lists the whole range again for a job dated in the window recorded since its first scan%s, whose second payout out of escrow under its memo is older than what a scan holds for a job not recorded",
    async (_, behindMs) => {
      const c = (await h.scenario()).recordOnChainClock();
      const escrowVault = c.profile.escrowVault;
      if (escrowVault === null) throw new Error("the localnet profile names an escrow vault");
      const from = edgeAfter(h, 500);
      const plan = h.op.plan({ keyIndex: 1 });
      const txs = h.op.honestJob(plan);
      const createdAt = h.op.now();
      h.op.send([
        h.op.transfer(escrowVault, h.op.attackerAccount(0n), 1n, {
          authority: h.op.escrowAuthority.address,
        }),
        h.op.memo(`decentral:settle:${plan.jobId}`),
      ]).signature;
      const to = edgeAfter(h, 500);
      // The run comes over an hour later: the payout is past what a scan holds unrecorded.
      moveClockTo(h, to, ESCROW_PENDING_MS + 10 * 60_000);
      const custody = { vaults: [plan.vault], byKey: {} };
      const now = () => h.op.now();
      const check = ledgerWindowCheck({
        store: c.store,
        reader: createLedgerReader({
          store: c.store,
          rpc: h.rpc,
          profile: c.profile,
          log,
          custody,
          now,
        }),
        profile: c.profile,
        graceSeconds: 0,
        now,
      });
      const run: EscrowRun = { newest: null, dated: null };
      const first = await check.escrowFirst({ from, to, escrow: run });
      expect(first.sentBack).toEqual([]);
      // Imported during the run, between its scans: dated in the window, recorded now by the
      // importing host's clock (behind, it dates the recording before the first scan began).
      c.record(plan, txs, { createdAt }, undefined, h.op.now() - behindMs);
      await c.flush();
      const result = await check({ from, to, escrow: run });
      // Kept with the job (a second payout out of escrow under its memo) and sent back.
      expect(result.escrowSentBack).toEqual([plan.jobId]);
    },
  );
});
