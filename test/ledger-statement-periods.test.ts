import { describe, expect, it } from "vitest";
import { periodOf } from "../src/dashboard/period.js";
import { statementBody } from "../src/dashboard/statement-page.js";
import type { LedgerRpc } from "../src/ledger/reader.js";
import { buildStatement, ledgerStoreOf, statementToCsv } from "../src/ledger/statement.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile } from "../src/verify/profiles.js";
import { listingWithout, periodEdge, vaultReader } from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

const log = createLogger({ level: "silent" });

const h = useAdversaryHarness();

/** Lets everything sent finalize, with the chain's clock past the last period's end. */
async function settle() {
  h.op.advanceClock(5_000);
  h.op.nextSlot();
  await h.finalized();
}

async function statementOf(c: Scenario, vault: string, from: number, to: number) {
  const s = await buildStatement(
    c.store,
    { from, to, vault },
    { profile: c.profile, graceSeconds: 0 },
  );
  return s;
}

describe("consecutive periods of a vault whose history read has a gap", () => {
  it("opens each period on the chain's balance at its start: the gap's money is its own period's difference", async () => {
    const c = await h.scenario();
    const vault = h.op.vault(2);
    const thief = h.op.attackerAccount(0n);
    const from = periodEdge(h);
    h.op.send([h.op.transfer(vault, thief, 1_000n)]);
    // A debit the history read never lists (a node that left it out of its listing).
    const missing = h.op.send([h.op.transfer(vault, thief, 12_345n)]).signature;
    h.op.send([h.op.transfer(vault, thief, 2_000n)]);
    const mid = periodEdge(h);
    const atMid = h.op.balance(vault);
    h.op.send([h.op.transfer(vault, thief, 3_000n)]);
    const to = periodEdge(h);
    const atEnd = h.op.balance(vault);
    await settle();
    await vaultReader(h, c, vault, listingWithout(h, missing)).syncVault(vault);

    const first = (await statementOf(c, vault, from, mid)).vaults[0]!;
    expect(first.gaps).toEqual([expect.objectContaining({ missingUnits: -12_345n })]);
    expect(first.closingOnChainUnits).toBe(atMid);
    expect(first.differenceUnits).toBe(-12_345n);
    expect(first.complete).toBe(false);

    // The next period opens where the chain stood at its start, the previous closing on chain:
    // its own movements (3,000 out) are the whole of its change, and it closes on the chain.
    const second = (await statementOf(c, vault, mid, to)).vaults[0]!;
    expect(second.gaps).toEqual([]);
    expect(second.openingUnits).toBe(atMid);
    expect(second.unexplainedOutUnits).toBe(3_000n);
    expect(second.closingByLedgerUnits).toBe(atEnd);
    expect(second.closingOnChainUnits).toBe(atEnd);
    expect(second.differenceUnits).toBe(0n);
    expect(second.complete).toBe(true);

    // The two periods at once hold the gap and its difference once.
    const whole = (await statementOf(c, vault, from, to)).vaults[0]!;
    expect(whole.openingUnits).toBe(first.openingUnits);
    expect(whole.differenceUnits).toBe(-12_345n);
  });
});

describe("a lock settled all but one unit, in the statement's CSV and on its page", () => {
  it("says what of the lock is still out and when it was due, as the JSON does", async () => {
    // A settlement window of a second, so the verifier (on the chain's clock) decides the job.
    const short = { ...localnetProfile, settlementWindowSeconds: 1, receiptTimeSkewSeconds: 0 };
    const c = await h.scenario(short);
    const keyIndex = 3;
    await c.pinKey(keyIndex);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex });
    const escrowTx = h.op.send(h.op.lockIxs(plan)).signature;
    // The settlement pays the worker and the treasury and sends back all but one unit of the
    // rest: one unit of the lock stays in escrow.
    const settlementTx = h.op.send([
      ...h.op.payoutIxs(plan, { remainder: plan.remainder - 1n }),
      h.op.memo(`decentral:settle:${plan.jobId}`),
    ]).signature;
    c.record(plan, { escrowTx, settlementTx });
    const to = periodEdge(h);
    await settle();
    await c.flush();
    const verifier = createVerifier({
      store: c.store,
      rpc: h.rpc,
      profile: short,
      log,
      options: quickVerifierOptions,
      now: () => h.op.now(),
    });
    expect((await verifier.runUntilSettled({}, { timeoutMs: 20_000 })).status).toBe("completed");
    expect(await c.outcome(plan.jobId)).toMatchObject({ verdict: "discrepancy" });
    await vaultReader(h, c, plan.vault).syncVault(plan.vault);
    // The ledger's read sent the job back to the verifier (its credits header): decided again.
    expect((await verifier.runUntilSettled({}, { timeoutMs: 20_000 })).status).toBe("completed");
    expect(await c.outcome(plan.jobId)).toMatchObject({ verdict: "discrepancy" });

    const oneSecond = { ...c.profile, settlementWindowSeconds: 1 };
    const due = await buildStatement(
      c.store,
      { from, to, vault: plan.vault },
      { profile: oneSecond, graceSeconds: 0 },
    );
    const lock = due.vaults[0]!.unreleasedLocks[0]!;
    expect(lock).toMatchObject({ jobId: plan.jobId, lockUnits: plan.lock, outstandingUnits: 1n });
    const row = statementToCsv(due)
      .split("\r\n")
      .find((l) => l.startsWith("unreleased_lock,"));
    expect(row).toContain(
      `,${escrowTx},${lock.lockedAt},${plan.lock},${plan.jobId},"outstandingUnits=1; dueBy=${lock.dueBy}",`,
    );
    const period = periodOf({}, to);
    const page = String(statementBody(period, due));
    expect(page).toContain(`${plan.jobId}</a>: 0.000001 USDC of `);
    expect(page).toContain(`still out, locked in`);

    const hour = { ...c.profile, settlementWindowSeconds: 3600 };
    const early = await buildStatement(
      c.store,
      { from, to, vault: plan.vault },
      { profile: hour, graceSeconds: 0 },
    );
    const notDue = early.vaults[0]!.locksNotDue[0]!;
    expect(notDue.outstandingUnits).toBe(1n);
    expect(
      statementToCsv(early)
        .split("\r\n")
        .find((l) => l.startsWith("lock_not_due,")),
    ).toContain(`,${plan.jobId},"outstandingUnits=1; dueBy=${notDue.dueBy}",`);
  });
});

describe("a statement read while a ledger round files its lines again", () => {
  it("is read again: a lock the round files anew is a lock in every figure, not an unexplained debit of no line", async () => {
    const c = await h.scenario();
    const keyIndex = 1;
    await c.pinKey(keyIndex);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex });
    const txs = h.op.honestJob(plan);
    const to = periodEdge(h);
    await settle();
    // Read before the receipt: the lock is an unreceipted debit until a round files it again.
    await vaultReader(h, c, plan.vault).syncVault(plan.vault);
    c.record(plan, txs);
    await c.flush();

    // The round's review runs between the statement's first reads and its reads of the lines.
    const ledger = ledgerStoreOf(c.store);
    const periodSums = ledger.periodSums;
    let reviewed = false;
    ledger.periodSums = async (...args) => {
      const sums = await periodSums(...args);
      // The period's own sums (not a check of what moved around them).
      if (!reviewed && args[1] === Math.ceil(from / 1000)) {
        reviewed = true;
        await ledger.review(plan.vault);
      }
      return sums;
    };
    try {
      const s = (await statementOf(c, plan.vault, from, to)).vaults[0]!;
      expect(reviewed).toBe(true);
      expect(s.locksUnits).toBe(plan.lock);
      expect(s.unexplainedOutUnits).toBe(0n);
      expect(s.counts.unexplained).toBe(0);
      expect(s.unexplained).toEqual([]);
      expect(s.differenceUnits).toBe(0n);
    } finally {
      ledger.periodSums = periodSums;
    }
  });
});

describe("consecutive periods of a vault whose history read has a gap across their edge", () => {
  it("close the first where the second opens, with the gap in both and its money a difference once", async () => {
    const c = await h.scenario();
    const vault = h.op.vault(3);
    const thief = h.op.attackerAccount(0n);
    const from = periodEdge(h);
    h.op.send([h.op.transfer(vault, thief, 1_000n)]);
    const atLastSeen = h.op.balance(vault);
    // The period's last debit, never listed: nothing read tells on which side of the edge
    // it moved, only that the next movement, after the edge, does not chain from the last.
    const missing = h.op.send([h.op.transfer(vault, thief, 12_345n)]).signature;
    const mid = periodEdge(h);
    h.op.send([h.op.transfer(vault, thief, 3_000n)]);
    const to = periodEdge(h);
    const atEnd = h.op.balance(vault);
    await settle();
    await vaultReader(h, c, vault, listingWithout(h, missing)).syncVault(vault);

    const first = (await statementOf(c, vault, from, mid)).vaults[0]!;
    const second = (await statementOf(c, vault, mid, to)).vaults[0]!;
    const whole = (await statementOf(c, vault, from, to)).vaults[0]!;
    expect(whole.differenceUnits).toBe(-12_345n);
    expect(whole.closingOnChainUnits).toBe(atEnd);
    // The next period opens on the first one's closing: one balance at their edge.
    expect(second.openingUnits).toBe(first.closingOnChainUnits);
    // The unseen debit is a difference of one period, not of both.
    expect((first.differenceUnits ?? 0n) + (second.differenceUnits ?? 0n)).toBe(-12_345n);
    expect(second.differenceUnits).toBe(-12_345n);
    expect(first.closingOnChainUnits).toBe(atLastSeen);
    // Either may hold it: neither is whole.
    for (const s of [first, second]) {
      expect(s.gaps).toEqual([expect.objectContaining({ missingUnits: -12_345n })]);
      expect(s.complete).toBe(false);
    }
  });
});

describe("consecutive periods of a vault whose newest debit the listing left out", () => {
  it("close where the next opens, list the gap up to the balance read, and hold its money once", async () => {
    const c = await h.scenario();
    const vault = h.op.victimVault(1_000_000n);
    const thief = h.op.attackerAccount(0n);
    const from = periodEdge(h);
    h.op.send([h.op.transfer(vault, thief, 1_000n)]);
    const atLastSeen = h.op.balance(vault);
    const mid = periodEdge(h);
    // The vault's newest debit, never listed and never followed by a movement that is: only
    // the balance read after it differs from the last line.
    const missing = h.op.send([h.op.transfer(vault, thief, 12_345n)]).signature;
    const mid2 = periodEdge(h);
    const to = periodEdge(h);
    await settle();
    await vaultReader(h, c, vault, listingWithout(h, missing)).syncVault(vault);
    const readThrough = (await ledgerStoreOf(c.store).cursorFigures(vault))!.finalThrough!;
    expect(readThrough).toBeGreaterThanOrEqual(to);
    const later = Math.ceil(readThrough / 86_400_000 + 1) * 86_400_000;

    // Four consecutive periods, the last one reaching past the balance read, and one after it.
    const edges = [from, mid, mid2, to, later, later + 86_400_000];
    const periods = [];
    for (let i = 0; i + 1 < edges.length; i++) {
      periods.push((await statementOf(c, vault, edges[i]!, edges[i + 1]!)).vaults[0]!);
    }
    for (let i = 0; i + 1 < periods.length; i++) {
      expect(periods[i + 1]!.openingUnits).toBe(periods[i]!.closingOnChainUnits);
    }
    // The unseen debit is a difference once over the periods, not once in each of them.
    const differences = periods.map((p) => p.differenceUnits ?? 0n);
    expect(differences.reduce((a, b) => a + b, 0n)).toBe(-12_345n);
    // Every period up to the one holding the balance read may hold the debit: none is whole,
    // and each lists the gap from the last line to the read.
    for (const p of periods.slice(0, 4)) {
      expect(p.complete).toBe(false);
      expect(p.gaps).toEqual([
        expect.objectContaining({ beforeSignature: null, missingUnits: -12_345n }),
      ]);
    }
    expect(periods[0]!.closingOnChainUnits).toBe(atLastSeen);
    expect(periods[3]!.differenceUnits).toBe(-12_345n);
    // After the read the vault opens on the balance read, with nothing unseen in it.
    expect(periods[4]!.openingUnits).toBe(h.op.balance(vault));
    expect(periods[4]!.gaps).toEqual([]);
    expect(periods[4]!.differenceUnits).toBe(0n);

    // The CSV names the read as the gap's end, with no signature after it.
    const csv = statementToCsv(await statementOf(c, vault, from, to));
    expect(csv).toContain("and the balance read at slot");
    // The page says the history is read through, with the gap and its money: not "not read".
    const page = String(statementBody(periodOf({}, mid), await statementOf(c, vault, from, mid)));
    expect(page).toContain("History read through the end of the period, with 1 gaps");
    expect(page).not.toContain("History not read through");
    expect(page).toContain("-0.012345 USDC moved unseen after");
    expect(page).toContain("before the balance read");
  });
});

describe("a vault holding credits whose history the listing leaves out whole", () => {
  it("is not called complete: no listed transaction brought in what it holds", async () => {
    const c = await h.scenario();
    const from = periodEdge(h);
    const vault = h.op.victimVault(1_000_000n);
    const thief = h.op.attackerAccount(0n);
    h.op.send([h.op.transfer(vault, thief, 400_000n)]);
    const to = periodEdge(h);
    await settle();
    const listsNothing: LedgerRpc = {
      ...listingWithout(h, ""),
      async getSignaturesForAddress(address, o) {
        const page = await h.rpc.getSignaturesForAddress(address, o);
        return address === vault ? [] : page;
      },
    };
    await vaultReader(h, c, vault, listsNothing).syncVault(vault);
    // It opened and closed on the balance read, `complete`: the 400,000 taken was in no figure.
    const s = (await statementOf(c, vault, from, to)).vaults[0]!;
    expect(s.complete).toBe(false);
    expect(s.gaps).toEqual([
      expect.objectContaining({
        afterSignature: null,
        beforeSignature: null,
        missingUnits: 600_000n,
      }),
    ]);
    // Its money is a difference of the period reaching past the read, after which it opens there.
    const readThrough = (await ledgerStoreOf(c.store).cursorFigures(vault))!.finalThrough!;
    const later = Math.ceil(readThrough / 86_400_000 + 1) * 86_400_000;
    const past = (await statementOf(c, vault, to, later)).vaults[0]!;
    expect(past.openingUnits).toBe(s.closingOnChainUnits);
    expect(past.closingOnChainUnits).toBe(600_000n);
    expect(past.differenceUnits).toBe(600_000n);
    const after = (await statementOf(c, vault, later, later + 86_400_000)).vaults[0]!;
    expect(after.openingUnits).toBe(600_000n);
    expect(after.gaps).toEqual([]);
    expect(statementToCsv(await statementOf(c, vault, from, to))).toContain(
      "unseen between no movement listed and the balance read at slot",
    );
  });
});

describe("a stretch of a vault's history split into two periods at every edge", () => {
  it("closes the first where the second opens, sums each figure once, and holds each gap's money once", async () => {
    const c = await h.scenario();
    const vault = h.op.victimVault(1_000_000n);
    const thief = h.op.attackerAccount(0n);
    const from = periodEdge(h);
    h.op.send([h.op.transfer(vault, thief, 1_000n)]);
    // A debit left out between two listed movements, one left out after the newest listed.
    const inside = h.op.send([h.op.transfer(vault, thief, 12_345n)]).signature;
    periodEdge(h);
    h.op.send([
      h.op.transfer(h.op.attackerAccount(50_000n), vault, 50_000n, {
        authority: h.op.attacker.address,
      }),
    ]);
    periodEdge(h);
    h.op.send([h.op.transfer(vault, thief, 2_000n)]);
    periodEdge(h);
    const tail = h.op.send([h.op.transfer(vault, thief, 777n)]).signature;
    const to = periodEdge(h);
    await settle();
    const node = listingWithout(h, inside);
    await vaultReader(h, c, vault, {
      ...node,
      async getSignaturesForAddress(address, o) {
        return (await node.getSignaturesForAddress(address, o)).filter((e) => e.signature !== tail);
      },
    }).syncVault(vault);

    const whole = (await statementOf(c, vault, from, to)).vaults[0]!;
    // The debit after the newest listed movement is the money of the period holding the read.
    const unseen = -12_345n;
    expect(whole.differenceUnits).toBe(unseen);
    const readThrough = (await ledgerStoreOf(c.store).cursorFigures(vault))!.finalThrough!;
    const later = Math.ceil(readThrough / 86_400_000 + 1) * 86_400_000;
    const after = (await statementOf(c, vault, to, later)).vaults[0]!;
    expect(after.openingUnits).toBe(whole.closingOnChainUnits);
    expect(after.differenceUnits).toBe(-777n);
    expect(after.closingOnChainUnits).toBe(h.op.balance(vault));
    const sum = ["depositsUnits", "locksUnits", "returnsUnits", "unexplainedOutUnits"] as const;
    // Every whole second and half second inside the stretch is an edge.
    for (let m = from + 500; m < to; m += 500) {
      const first = (await statementOf(c, vault, from, m)).vaults[0]!;
      const second = (await statementOf(c, vault, m, to)).vaults[0]!;
      const at = new Date(m).toISOString();
      expect(second.openingUnits, at).toBe(first.closingOnChainUnits);
      expect(first.openingUnits, at).toBe(whole.openingUnits);
      expect(second.closingOnChainUnits, at).toBe(whole.closingOnChainUnits);
      for (const k of sum) expect(first[k] + second[k], `${k} at ${at}`).toBe(whole[k]);
      const differences = (first.differenceUnits ?? 0n) + (second.differenceUnits ?? 0n);
      expect(differences, at).toBe(unseen);
      expect(first.complete || second.complete, at).toBe(false);
    }
  });
});

describe("a nightly window whose vault a ledger round writes during every statement read", () => {
  it("is not judged clean: its figures are of two states, and the run says the ledger is not complete", async () => {
    const c = await h.scenario();
    const keyIndex = 0;
    await c.pinKey(keyIndex);
    const from = periodEdge(h);
    const plan = h.op.plan({ keyIndex });
    c.record(plan, h.op.honestJob(plan));
    await c.flush();
    const to = periodEdge(h);
    await settle();
    const reader = vaultReader(h, c, plan.vault);
    await reader.syncVault(plan.vault);
    const check = ledgerWindowCheck({
      store: c.store,
      reader,
      profile: c.profile,
      graceSeconds: 0,
      now: () => h.op.now(),
    });
    // Quiet: judged, complete.
    expect((await check({ from, to })).incomplete).toBe(null);

    // Another process's round writes the vault's cursor between the statement's reads, every
    // time it is built.
    const ledger = ledgerStoreOf(c.store);
    const periodSums = ledger.periodSums;
    let rounds = 0;
    ledger.periodSums = async (...args) => {
      await ledger.setError(plan.vault, `round ${++rounds}`, Date.now());
      return periodSums(...args);
    };
    try {
      const statement = (await statementOf(c, plan.vault, from, to)).vaults[0]!;
      expect(statement.complete).toBe(false);
      expect(statement.differenceUnits).toBe(null);
      const result = await check({ from, to });
      expect(result.incomplete).toContain("written by a ledger round during each statement read");
    } finally {
      ledger.periodSums = periodSums;
    }
  });
});
