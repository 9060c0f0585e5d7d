import { readMigrationFiles } from "drizzle-orm/migrator";
import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { migrationsFolder } from "../src/db/migrate.js";
import { pgMigrationsFolder } from "../src/db/pg/migrate.js";
import type { InstructionSpec } from "../src/localnet/wire.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { finalizedAfter, periodEdge, vaultStatementSince } from "./support/ledger-periods.js";
import { type JobPlan, useAdversaryHarness, verified } from "./support/operator.js";

/**
 * The operator signs for every credit vault and for escrow, so one transaction can be a job's
 * lock and a payout out of the same vault. The vault's line is then one debit of lock + payout,
 * and the job's settlement accounts for the lock alone: what never reached escrow (or left it
 * again at once) is money out of the vault no job accounts for, and the statement must name
 * it once the lock is due. The verifier counts such a payout among the job's `charged_units`
 * (the lock paid someone); read as settled, it released the lock, payout and all, and no
 * finding named the money.
 */

const PAYOUT = 50_000n;

/**
 * Runs on `store` the statements of the migration whose SQL holds `marker`, as an upgrade does:
 * for rows a test first set back to what an older version wrote.
 */
async function runMigration(store: Store, marker: string): Promise<void> {
  const folder = store.kind === "sqlite" ? migrationsFolder : pgMigrationsFolder;
  const m = readMigrationFiles({ migrationsFolder: folder }).find((x) =>
    x.sql.some((s) => s.includes(marker)),
  );
  if (!m) throw new Error(`no migration with ${marker}`);
  for (const statement of m.sql) {
    if (statement.trim() === "") continue;
    if (store.kind === "sqlite") store.sqlite.exec(statement);
    else await store.pool.query(statement);
  }
}

/** Sets a job's verdict back to one written before `escrow_paid_units` was kept. */
async function asVerdictBeforeEscrowPaid(store: Store, jobId: string): Promise<void> {
  if (store.kind === "sqlite") {
    store.sqlite.prepare("UPDATE jobs SET escrow_paid_units = NULL WHERE job_id = ?").run(jobId);
  } else {
    await store.pool.query("UPDATE jobs SET escrow_paid_units = NULL WHERE job_id = $1", [jobId]);
  }
}

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  interface Variant {
    /** The lock transaction's instructions besides `next`'s own lock and escrow memo. */
    lockExtra: (next: JobPlan, settled: JobPlan) => InstructionSpec[];
    /** The settlement's instructions (`next`'s honest one by default). */
    settlement?: (next: JobPlan) => InstructionSpec[];
    /** The check of the lock's job that must fail (`escrow.vault` by default). */
    fails?: string;
  }

  const toOperator = (next: JobPlan, amount = PAYOUT) =>
    h.op.transfer(next.vault, h.op.attackerAccount(0n), amount);

  const variants: [string, Variant][] = [
    ["the payout alone", { lockExtra: (next) => [toOperator(next)] }],
    [
      "the payout under the customer's settled job's settle memo",
      {
        lockExtra: (next, settled) => [
          toOperator(next),
          h.op.memo(`decentral:settle:${settled.jobId}`),
        ],
        fails: "escrow.memo",
      },
    ],
    [
      "two payouts to two operator accounts",
      { lockExtra: (next) => [toOperator(next, 20_000n), toOperator(next, PAYOUT - 20_000n)] },
    ],
    [
      "the payout sent into escrow and out of it to the operator",
      {
        lockExtra: (next) => [
          h.op.transfer(next.vault, h.op.accounts.escrowVault, PAYOUT),
          h.op.transfer(h.op.accounts.escrowVault, h.op.attackerAccount(0n), PAYOUT),
        ],
      },
    ],
    [
      "the payout into another customer's vault",
      { lockExtra: (next) => [h.op.transfer(next.vault, h.op.victimVault(0n), PAYOUT)] },
    ],
    [
      "the payout, and a settlement paying the worker the payout's worth more out of escrow",
      {
        lockExtra: (next) => [toOperator(next)],
        settlement: (next) => [
          ...h.op.payoutIxs(next, { workerShare: next.workerShare + PAYOUT }),
          h.op.memo(`decentral:settle:${next.jobId}`),
        ],
      },
    ],
  ];

  it.each(variants)("names what a lock paid besides escrow, with %s", async (_, v) => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const settled = h.op.plan({ keyIndex: 3 });
    const settledTxs = h.op.honestJob(settled);
    c.record(settled, settledTxs);
    c.honestJobsApi(settled, settledTxs);
    const next = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send([...h.op.lockIxs(next), ...v.lockExtra(next, settled)]).signature;
    const settlementTx = h.op.send(v.settlement?.(next) ?? h.op.settleIxs(next)).signature;
    c.record(next, { escrowTx, settlementTx });
    c.honestJobsApi(next, { escrowTx, settlementTx });
    // Judged first: until the verifier decides the job, a settlement that landed accounts for
    // its locks provisionally (`settledUnits`), and a statement calls nothing of them out.
    const [honest, judged] = await c.verdicts(settled.jobId, next.jobId);
    expect(honest).toEqual(verified);
    expect(judged).toEqual(
      expect.objectContaining({
        verdict: "discrepancy",
        failing: expect.arrayContaining([v.fails ?? "escrow.vault"]),
      }),
    );
    // Due: the chain's clock past the lock's settlement window.
    await finalizedAfter(h, (c.profile.settlementWindowSeconds + 1) * 1000);
    const s = await vaultStatementSince(h, c, next.vault, from);
    expect(s.locksNotDue).toEqual([]);
    expect(s.unexplained).toEqual([]);
    expect(s.unreleasedLocks).toEqual([
      expect.objectContaining({
        jobId: next.jobId,
        signature: escrowTx,
        lockUnits: next.lock + PAYOUT,
        outstandingUnits: PAYOUT,
      }),
    ]);
    expect(s.differenceUnits).toBe(0n);
  });

  // Before the verifier decides the job, a settlement that landed accounts for its locks
  // provisionally: counted whole, it released the lock's debit, payout and all, and a statement
  // made between the settlement and the verdict named nothing. Only what went into escrow is
  // accounted for then, and the payout is named as soon as the lock is due.
  it.each(variants)(
    "names what a lock paid besides escrow before its job is decided, with %s",
    async (_, v) => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = periodEdge(h);
      const settled = h.op.plan({ keyIndex: 3 });
      const settledTxs = h.op.honestJob(settled);
      c.record(settled, settledTxs);
      c.honestJobsApi(settled, settledTxs);
      expect(await c.verdicts(settled.jobId)).toEqual([verified]);
      const next = h.op.plan({ keyIndex: 3 });
      const escrowTx = h.op.send([...h.op.lockIxs(next), ...v.lockExtra(next, settled)]).signature;
      const settlementTx = h.op.send(v.settlement?.(next) ?? h.op.settleIxs(next)).signature;
      c.record(next, { escrowTx, settlementTx });
      c.honestJobsApi(next, { escrowTx, settlementTx });
      await finalizedAfter(h, (c.profile.settlementWindowSeconds + 1) * 1000);
      const s = await vaultStatementSince(h, c, next.vault, from);
      expect((await c.outcome(next.jobId)).verdict).toBe("pending");
      expect(s.locksNotDue).toEqual([]);
      expect(s.unreleasedLocks).toEqual([
        expect.objectContaining({
          jobId: next.jobId,
          signature: escrowTx,
          lockUnits: next.lock + PAYOUT,
          outstandingUnits: PAYOUT,
        }),
      ]);
      expect(s.differenceUnits).toBe(0n);
    },
  );

  // An honest job's lock, settled and not yet decided, is accounted for whole meanwhile.
  it("names nothing of an honest lock settled before its job is decided", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const next = h.op.plan({ keyIndex: 3 });
    const txs = h.op.honestJob(next);
    c.record(next, txs);
    c.honestJobsApi(next, txs);
    await finalizedAfter(h, (c.profile.settlementWindowSeconds + 1) * 1000);
    const s = await vaultStatementSince(h, c, next.vault, from);
    expect((await c.outcome(next.jobId)).verdict).toBe("pending");
    expect(s.locksNotDue).toEqual([]);
    expect(s.unreleasedLocks).toEqual([]);
    expect(s.unexplained).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });

  // A verdict written before the verifier kept escrow_paid_units: the release rule reads its
  // charged_units, which count the payout as paid at once, and released the lock, payout and
  // all, for good (the stored release flag). The upgrade opens the lock again and sends such a
  // verdict back to be judged, and the statement then names the payout.
  it("names a lock's payout once a verdict written before escrow_paid_units is judged again", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const next = h.op.plan({ keyIndex: 3 });
    const escrowTx = h.op.send([...h.op.lockIxs(next), toOperator(next)]).signature;
    const settlementTx = h.op.send(h.op.settleIxs(next)).signature;
    c.record(next, { escrowTx, settlementTx });
    c.honestJobsApi(next, { escrowTx, settlementTx });
    const [judged] = await c.verdicts(next.jobId);
    expect(judged?.verdict).toBe("discrepancy");
    await finalizedAfter(h, (c.profile.settlementWindowSeconds + 1) * 1000);
    await asVerdictBeforeEscrowPaid(c.store, next.jobId);
    const before = await vaultStatementSince(h, c, next.vault, from);
    expect(before.unreleasedLocks).toEqual([]);

    await runMigration(c.store, "Only those are judged again");
    await c.verify();

    const s = await vaultStatementSince(h, c, next.vault, from);
    expect(s.unreleasedLocks).toEqual([
      expect.objectContaining({ jobId: next.jobId, signature: escrowTx, outstandingUnits: PAYOUT }),
    ]);
    expect(s.differenceUnits).toBe(0n);
    expect(await c.outcome(next.jobId)).toEqual(judged);
  });

  // One transaction that is both the job's lock and its settlement (named for both): escrow's
  // credit nets against what it paid out, so escrow shows no movement and the vault one debit
  // of what the worker and treasury got. That went through escrow to them: the release rule
  // counted none of it paid out of escrow and listed the whole debit as an unreleased lock.
  // A payout to the operator riding in it is still named, and only it.
  it.each([
    ["nothing else", 0n],
    ["a payout to the operator beside it", PAYOUT],
  ])(
    "counts a lock settled in its own transaction as paid out of escrow, with %s",
    async (_, payout) => {
      const c = (await h.scenario()).recordOnChainClock();
      const from = periodEdge(h);
      const next = h.op.plan({ keyIndex: 3 });
      const tx = h.op.send([
        ...h.op.lockIxs(next),
        ...h.op.settleIxs(next),
        ...(payout > 0n ? [toOperator(next, payout)] : []),
      ]).signature;
      c.record(next, { escrowTx: tx, settlementTx: tx });
      c.honestJobsApi(next, { escrowTx: tx, settlementTx: tx });
      const [judged] = await c.verdicts(next.jobId);
      // One signature for two steps is no honest job; the statement still tells what moved.
      expect(judged?.verdict).toBe("discrepancy");
      await finalizedAfter(h, (c.profile.settlementWindowSeconds + 1) * 1000);
      const s = await vaultStatementSince(h, c, next.vault, from);
      expect(s.locksNotDue).toEqual([]);
      expect(s.unreleasedLocks.map((u) => [u.signature, u.outstandingUnits])).toEqual(
        payout > 0n ? [[tx, payout]] : [],
      );
      expect(s.differenceUnits).toBe(0n);
    },
  );

  // The payout paid back to the vault in the settlement by the account it went to: the ledger
  // counts as the job's return only what escrow paid in, so the statement lists the payout
  // back as a deposit and the lock as out by as much; its books still balance.
  it("lists a lock's payout paid back by its payee as a deposit, the lock out by as much", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const from = periodEdge(h);
    const next = h.op.plan({ keyIndex: 3 });
    const operator = h.op.attackerAccount(0n);
    const escrowTx = h.op.send([
      ...h.op.lockIxs(next),
      h.op.transfer(next.vault, operator, PAYOUT),
    ]).signature;
    const settlementTx = h.op.send([
      ...h.op.settleIxs(next),
      h.op.transfer(operator, next.vault, PAYOUT, { authority: h.op.attacker.address }),
    ]).signature;
    c.record(next, { escrowTx, settlementTx });
    c.honestJobsApi(next, { escrowTx, settlementTx });
    const [judged] = await c.verdicts(next.jobId);
    expect(judged).toEqual(
      expect.objectContaining({
        verdict: "discrepancy",
        failing: expect.arrayContaining(["escrow.vault"]),
      }),
    );
    await finalizedAfter(h, (c.profile.settlementWindowSeconds + 1) * 1000);
    const s = await vaultStatementSince(h, c, next.vault, from);
    expect(s.returnsUnits).toBe(next.remainder);
    expect(s.depositsUnits).toBe(PAYOUT);
    expect(s.locksNotDue).toEqual([]);
    expect(s.unreleasedLocks).toEqual([
      expect.objectContaining({ signature: escrowTx, outstandingUnits: PAYOUT }),
    ]);
    expect(s.unexplained).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
  });
});
