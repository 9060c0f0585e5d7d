import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/api/app.js";
import { createMetrics } from "../src/api/metrics.js";
import { createToken } from "../src/auth/tokens.js";
import { createRpcPool, type RpcPool } from "../src/chain/rpc-pool.js";
import type { DashboardPeriod } from "../src/dashboard/period.js";
import { statementBody } from "../src/dashboard/statement-page.js";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { createLedgerReader, type LedgerRpc } from "../src/ledger/reader.js";
import {
  buildStatement,
  ledgerStoreOf,
  type StatementJson,
  statementToCsv,
} from "../src/ledger/statement.js";
import { ledgerTotals } from "../src/ledger/totals.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { startLocalWorld } from "../src/localnet/world.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { summaryToText } from "../src/nightly/summary-format.js";
import { recordReceipts } from "../src/recorder/receipts.js";
import { auditRecord } from "../src/reports/audit-record.js";
import { type ReconciliationQuery, reconciliationReport } from "../src/reports/reconciliation.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../src/store/ledger-rules.js";
import { createVerifier } from "../src/verify/engine.js";
import { localnetProfile, type Profile } from "../src/verify/profiles.js";
import { chainSecondAfter, finalizedPast } from "./support/finality.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";
import { useStarted } from "./support/started-life.js";
import { createTestStore } from "./support/store.js";
import { groundTruth, runRecordedJob } from "./support/verify-jobs.js";

const log = createLogger({ level: "silent" });
/** A one-second settlement window, so an unreturned lock is overdue within the test. */
const profile: Profile = { ...localnetProfile, settlementWindowSeconds: 1 };

const world = useStarted(() => startLocalWorld({ slotMs: 10, finalitySlots: 3 }));
let rpc: RpcPool;
beforeAll(() => {
  rpc = createRpcPool({
    endpoints: [{ url: world.rpcUrl, rateLimitPerSec: 500, concurrency: 8, timeoutMs: 2000 }],
    backoffBaseMs: 10,
    backoffMaxMs: 50,
  });
});
afterAll(async () => {
  await rpc?.close();
});

const vaultOf = (apiKeyIndex: number) => world.accounts.creditVaults[apiKeyIndex]!.vault;

/** Waits until everything sent so far is finalized on the local chain. */
async function finalized() {
  const target = world.currentSlot() + 4;
  while (world.currentSlot() < target) await new Promise((r) => setTimeout(r, 10));
}

/**
 * Waits until the chain's finalized time has passed the lock's block second plus the settlement
 * window: a vault read after it judges the lock due (block second + window before the read's
 * final second), as a fixed sleep of the window promised only on a quiet host.
 */
async function lockDue(lockedAt: string | null | undefined) {
  expect(lockedAt).toEqual(expect.any(String));
  await finalizedPast(
    world,
    Date.parse(lockedAt as string) + profile.settlementWindowSeconds * 1000 + 999,
  );
}

async function deposit(apiKeyIndex: number, units: bigint) {
  const res = await fetch(`${world.simulatorUrl}/sim/deposits`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ apiKeyIndex, units: units.toString() }),
  });
  expect(res.status).toBe(200);
  return (await res.json()) as { signature: string };
}

/** Every transaction the chain holds for a vault, at finalized, oldest first. */
function chainHistory(vault: string): string[] {
  return world.chain
    .signaturesForAddress(vault, { limit: 1_000_000, commitment: "finalized" })
    .map((t) => t.signature)
    .reverse();
}

function reader(store: SqliteStore, vault: string, ledgerRpc: LedgerRpc = rpc, pageSize = 1000) {
  return createLedgerReader({
    store,
    rpc: ledgerRpc,
    profile,
    log,
    custody: { vaults: [vault], byKey: {} },
    options: { pageSize },
  });
}

async function verifyAll(store: SqliteStore) {
  const verifier = createVerifier({
    store,
    rpc,
    profile,
    log,
    options: quickVerifierOptions,
  });
  await verifier.runUntilSettled({}, { timeoutMs: 20_000 });
}

const statementOf = async (store: SqliteStore, vault: string, to = Date.now()) =>
  (await buildStatement(store, { from: 0, to, vault }, { profile, graceSeconds: 0 })).vaults[0]!;

describe("the ledger of a credit vault against the local world", () => {
  it("explains every movement of honest traffic with a top-up, and closes on the chain's balance to the base unit", async () => {
    const store = createTestStore();
    const vault = vaultOf(0);
    for (const spec of [
      { model: "qwen3-8b" },
      { model: "llama-3.3-70b", maxTokens: 800 },
      { model: "phi-4-mini", stream: true },
    ]) {
      await runRecordedJob(world, store, spec);
    }
    const top = await deposit(0, 2_500_000n);
    await runRecordedJob(world, store, { model: "mistral-small-3.1-24b", stream: true });
    await runRecordedJob(world, store, { model: "qwen3-8b", fault: "timeout" });
    await finalized();
    const end = Date.now();
    // Read once the chain has finalized past the period's end, as the nightly run waits to.
    await finalizedPast(world, end);

    // The verifier goes first: the ledger fetches only what no receipt named (the vault's
    // creation with its first payment, and the top-up).
    await verifyAll(store);
    const result = await reader(store, vault).syncVault(vault);
    const history = chainHistory(vault).length;
    expect(result).toEqual({
      vault,
      pages: 1,
      listed: history,
      fetched: 2,
      shared: history - 2,
      pending: 0,
      noBlockTime: null,
    });

    const s = await statementOf(store, vault, end);
    expect(s.unexplained).toEqual([]);
    expect(s.unreleasedLocks).toEqual([]);
    expect(s.creditsHeaderMismatches).toEqual([]);
    // The history starts with the vault's creation, which paid its first credits in.
    expect(s.openingUnits).toBe(0n);
    expect(s.missingHistory).toBeNull();
    expect(s.counts).toMatchObject({ locks: 5, returns: 5, deposits: 2, unexplained: 0 });
    expect(s.depositsUnits).toBe(10_000_000_000_000n + 2_500_000n);
    expect(s.closingOnChainUnits).toBe(world.chain.tokenAmount(vault));
    expect(s.closingByLedgerUnits).toBe(world.chain.tokenAmount(vault));
    expect(s.differenceUnits).toBe(0n);
    expect(s.complete).toBe(true);
    expect(chainHistory(vault)).toContain(top.signature);

    // A busy vault's newest line, listed after the period's end and not read yet, does not keep
    // the period from being read; one listed before its end does.
    const endSec = Math.floor(end / 1000);
    const newest = store.sqlite
      .prepare(
        `SELECT ord, block_time AS blockTime FROM ledger_lines WHERE vault = ?
           ORDER BY ord DESC LIMIT 1`,
      )
      .get(vault) as { ord: number; blockTime: number };
    const setLine = (state: string, blockTime: number) =>
      store.sqlite
        .prepare("UPDATE ledger_lines SET state = ?, block_time = ? WHERE vault = ? AND ord = ?")
        .run(state, blockTime, vault, newest.ord);
    setLine("listed", endSec + 60);
    const later = await statementOf(store, vault, end);
    expect(later.complete).toBe(true);
    // The balance read now holds that unread line's movement: the period closes on the last
    // movement read before its end, and the ledger agrees with it.
    expect(later).toMatchObject({ closingOnChainSource: "last_transaction", differenceUnits: 0n });
    setLine("listed", endSec - 1);
    expect((await statementOf(store, vault, end)).complete).toBe(false);
    setLine("read", newest.blockTime);

    // The simulator's own list of what it moved in the vault says the same, line for line.
    const truth = (await (
      await fetch(`${world.simulatorUrl}/sim/vaults/${vault}/movements`)
    ).json()) as { movements: { kind: string; signature: string; deltaUnits: string }[] };
    const byKind = (k: string[]) => truth.movements.filter((m) => k.includes(m.kind)).length;
    expect(byKind(["lock"])).toBe(s.counts.locks);
    expect(byKind(["settle", "refund"])).toBe(s.counts.returns);
    expect(byKind(["deposit"])).toBe(s.counts.deposits);
    expect(truth.movements.reduce((sum, m) => sum + BigInt(m.deltaUnits), 0n)).toBe(
      s.depositsUnits - s.locksUnits + s.returnsUnits,
    );
  });

  it("finds the hidden job of an unreceipted charge as one unreceipted debit naming it", async () => {
    const store = createTestStore();
    const vault = vaultOf(1);
    await runRecordedJob(world, store, { apiKeyIndex: 1 });
    const { jobId } = await runRecordedJob(world, store, {
      apiKeyIndex: 1,
      fault: "unreceipted-charge",
    });
    const hidden = (await groundTruth(world, jobId)).hidden as {
      jobId: string;
      escrowTx: string;
      lockUnits: string;
    };
    await finalized();
    await reader(store, vault).syncVault(vault);

    const s = await statementOf(store, vault);
    expect(s.unexplained).toEqual([
      expect.objectContaining({
        finding: "unreceipted_debit",
        signature: hidden.escrowTx,
        amountUnits: -BigInt(hidden.lockUnits),
        memoJobId: hidden.jobId,
        memo: `decentral:escrow:${hidden.jobId}`,
      }),
    ]);
    expect(s.unreleasedLocks).toEqual([]);
    expect(s.counts).toMatchObject({ locks: 2, returns: 3, deposits: 1, unexplained: 1 });
    expect(s.differenceUnits).toBe(0n);
    const totals = await ledgerTotals(store, profile, 0);
    expect(totals).toEqual({ unexplained: 1, unreleasedLocks: 0, imbalanced: 0 });
    const metrics = await createMetrics({ store, ledger: () => totals }).registry.metrics();
    expect(metrics).toContain('decentral_audit_ledger_unexplained{finding="unreceipted_debit"} 1');
    expect(metrics).toContain("decentral_audit_ledger_lag_seconds");

    // The same statement over HTTP, in JSON and CSV, with a read token.
    const app = createApp({ store, log, statement: { profile, graceSeconds: 0 } });
    const read = (await createToken(store, { role: "read", name: "finance" })).token;
    const ingest = (await createToken(store, { role: "ingest", name: "backend" })).token;
    const url = `/reports/statement?from=0&to=${Date.now()}&vault=${vault}`;
    const auth = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
    const json = (await (await app.request(url, auth(read))).json()) as StatementJson;
    expect(json.vaults[0]).toMatchObject({
      vault,
      differenceUnits: "0",
      unexplained: [
        {
          finding: "unreceipted_debit",
          memoJobId: hidden.jobId,
          amountUnits: `-${hidden.lockUnits}`,
        },
      ],
    });
    const csv = await (await app.request(`${url}&format=csv`, auth(read))).text();
    expect(csv.split("\r\n")[2]).toMatch(
      new RegExp(
        `^unreceipted_debit,${vault},.*,${hidden.escrowTx},.*,-${hidden.lockUnits},${hidden.jobId},`,
      ),
    );
    expect((await app.request(url, auth(ingest))).status).toBe(403);
    expect((await app.request(url)).status).toBe(401);
    const bad = await app.request(
      `/reports/statement?from=0&to=${Date.now()}&vault=0OIl`,
      auth(read),
    );
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      error: { code: "validation_failed", field: "vault" },
    });
  });

  it("makes the nightly verify exit 1 on an unreceipted debit even when every recorded job is verified, and 0 on honest traffic", async () => {
    // Block times are whole seconds: the window starts on one, after the earlier test's jobs.
    const from = await chainSecondAfter(world);
    const nightly = async (store: SqliteStore) => {
      const verifier = createVerifier({
        store,
        rpc,
        profile,
        log,
        options: quickVerifierOptions,
      });
      const ledger = createLedgerReader({ store, rpc, profile, log });
      return runNightlyVerification(store, verifier, {
        from,
        to: Date.now(),
        timeoutMs: 20_000,
        ledger: ledgerWindowCheck({ store, reader: ledger, profile, graceSeconds: 0 }),
      });
    };
    const honest = createTestStore();
    await runRecordedJob(world, honest, { apiKeyIndex: 1 });
    await runRecordedJob(world, honest, { apiKeyIndex: 1, stream: true });
    await finalized();
    // Key 1's vault also holds the earlier test's jobs, unrecorded here: the first run judges
    // the vault's whole history, so they are debits before the window no receipt explains.
    const first = await nightly(honest);
    expect(first).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    expect(first.ledger?.judgedBefore).toEqual([{ vault: vaultOf(1), from: null }]);
    expect(first.ledger?.unreceiptedDebits.length).toBeGreaterThan(0);
    expect(first.ledger?.unreceiptedDebits.every((d) => d.beforeWindow)).toBe(true);
    // Judged once: the next run judges only what came since.
    const clean = await nightly(honest);
    expect(clean).toMatchObject({ outcome: "verified", exitCode: 0 });
    expect(clean.ledger).toMatchObject({ vaults: 1, unreceiptedDebits: [], unreleasedLocks: [] });

    const { jobId } = await runRecordedJob(world, honest, {
      apiKeyIndex: 1,
      fault: "unreceipted-charge",
    });
    const hidden = (await groundTruth(world, jobId)).hidden as { jobId: string; escrowTx: string };
    await finalized();
    const dirty = await nightly(honest);
    expect(dirty).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });
    // No recorded job fails: the charged job's header may count the hidden debit, which the chain
    // can date in its response's own second, and then its order is unproven, never a discrepancy.
    expect(dirty.byVerdict.verified + dirty.byVerdict.partially_verified).toBe(3);
    expect(dirty.byVerdict.verified).toBeGreaterThanOrEqual(2);
    expect(dirty.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({ signature: hidden.escrowTx, memoJobId: hidden.jobId }),
    ]);
    expect(summaryToText(dirty)).toMatch(/unreceipted debit of \d+ units/);
  });

  it("finds a lock never returned once the settlement window and grace have passed", async () => {
    const store = createTestStore();
    const vault = vaultOf(2);
    await runRecordedJob(world, store, { apiKeyIndex: 2 });
    const { jobId } = await runRecordedJob(world, store, {
      apiKeyIndex: 2,
      fault: "unreleased-lock",
    });
    const truth = await groundTruth(world, jobId);
    await finalized();
    const ledger = reader(store, vault);
    await ledger.syncVault(vault);
    // Within the window the lock is only open.
    const open = await statementOf(store, vault);
    expect(open.unreleasedLocks).toEqual([]);

    await lockDue(open.locksNotDue.find((l) => l.jobId === jobId)?.lockedAt);
    await ledger.syncVault(vault);
    const s = await statementOf(store, vault);
    expect(s.unreleasedLocks).toEqual([
      expect.objectContaining({
        finding: "unreleased_lock",
        jobId,
        signature: truth.escrowTx,
        lockUnits: BigInt(truth.lockUnits as string),
      }),
    ]);
    expect(s.unexplained).toEqual([]);
    expect(s.differenceUnits).toBe(0n);
    // The nightly summary says what of the lock is still out, as the statement does.
    const window = ledgerWindowCheck({ store, reader: ledger, profile, graceSeconds: 0 });
    expect((await window({ from: 0, to: Date.now() })).unreleasedLocks).toEqual([
      expect.objectContaining({
        jobId,
        lockUnits: truth.lockUnits,
        outstandingUnits: truth.lockUnits,
      }),
    ]);
  });

  it("finds a credits header that matches no balance of the vault between the job's lock and its response", async () => {
    const store = createTestStore();
    const index = world.accounts.creditVaults.length - 1;
    const vault = vaultOf(index);
    // The low-balance key, topped up: its vault is used by no other test.
    await deposit(index, 100_000_000n);
    const target = {
      decentralBaseUrl: world.decentralBaseUrl,
      apiKeys: [...world.apiKeys, world.lowBalanceApiKey],
    };
    await runRecordedJob(target, store, { apiKeyIndex: index });
    await runRecordedJob(target, store, { apiKeyIndex: index, stream: true });
    const { jobId } = await runRecordedJob(target, store, {
      apiKeyIndex: index,
      fault: "credits-header-off",
    });
    // Read once the chain finalized past the response and the 2 s after it: a mismatch, not a
    // header still undecided.
    await finalizedPast(world, Date.now() + SETTLEMENT_CLOCK_SLACK_SECONDS * 1000);
    await reader(store, vault).syncVault(vault);
    const s = await statementOf(store, vault);
    expect(s.creditsHeaderUndecided).toEqual([]);
    expect(s.creditsHeaderMismatches).toEqual([
      expect.objectContaining({ finding: "credits_header_mismatch", jobId }),
    ]);
    const [mismatch] = s.creditsHeaderMismatches;
    expect(mismatch!.headerUnits - (mismatch!.balancesUnits.at(-1)! / 10_000n) * 10_000n).toBe(
      30_000n,
    );
    expect(s.unexplained).toEqual([]);
    expect(s.unreleasedLocks).toEqual([]);
    expect(s.counts).toMatchObject({ deposits: 2, locks: 3, returns: 3 });
    expect(s.differenceUnits).toBe(0n);

    // Every format shows it: the CSV a finance team downloads, and the dashboard's page.
    const statement = { from: 0, to: Date.now(), generatedAt: Date.now(), vaults: [s] };
    const csv = statementToCsv(statement);
    expect(csv).toContain(`credits_header_mismatch,${vault},`);
    expect(csv).toContain(`,${mismatch!.headerUnits},${jobId},balances held: `);
    const period = { kind: "day", from: 0, to: Date.now(), firstDay: "", lastDay: "", query: "" };
    const page = String(statementBody(period as DashboardPeriod, statement));
    expect(page).toContain("1 findings in this period");
    expect(page).toContain(`>${jobId}</a>: its credits-remaining header says`);
    // A closing balance off the chain's is a finding too, as the nightly run counts it.
    const off = { ...statement, vaults: [{ ...s, differenceUnits: -6000n }] };
    expect(String(statementBody(period as DashboardPeriod, off))).toContain(
      "2 findings in this period",
    );
  });

  it("closes on the chain's balance when a ledger round writes the vault while its statement is read", async () => {
    const store = createTestStore();
    const vault = vaultOf(2);
    await runRecordedJob(world, store, { apiKeyIndex: 2 });
    await finalized();
    await reader(store, vault).syncVault(vault);
    // A period still open, as the dashboard's month to date: serve's ledger keeps adding to it.
    const period = { from: 0, to: Date.now() + 3_600_000, vault };
    const options = { profile, graceSeconds: 0 };
    expect((await buildStatement(store, period, options)).vaults[0]!.differenceUnits).toBe(0n);

    // The next job's lines are stored by a round that runs just after the statement read the
    // vault's cursor, before it read the rest.
    await runRecordedJob(world, store, { apiKeyIndex: 2 });
    await finalized();
    const ledger = ledgerStoreOf(store);
    const cursorFigures = ledger.cursorFigures.bind(ledger);
    let rounds = 0;
    ledger.cursorFigures = async (v) => {
      const figures = await cursorFigures(v);
      if (rounds++ === 0) await reader(store, vault).syncVault(vault);
      return figures;
    };
    try {
      const read = (await buildStatement(store, period, options)).vaults[0]!;
      expect(read.differenceUnits).toBe(0n);
      expect(read.closingByLedgerUnits).toBe(world.chain.tokenAmount(vault));
    } finally {
      ledger.cursorFigures = cursorFigures;
    }
  });

  it("calls no difference when a ledger round writes the vault during every read of its statement", async () => {
    const store = createTestStore();
    const vault = vaultOf(2);
    await runRecordedJob(world, store, { apiKeyIndex: 2 });
    await finalized();
    await reader(store, vault).syncVault(vault);
    const period = { from: 0, to: Date.now() + 3_600_000, vault };
    const options = { profile, graceSeconds: 0 };
    // A busy vault whose statement takes longer than serve's round: each read of it sees a new
    // job's lines stored after its cursor was read, before the rest. Its reads never agree.
    const ledger = ledgerStoreOf(store);
    const cursorFigures = ledger.cursorFigures.bind(ledger);
    let calls = 0;
    ledger.cursorFigures = async (v) => {
      const figures = await cursorFigures(v);
      // Each try reads the cursor three times: its state, its figures, its state again.
      if (calls++ % 3 === 1) {
        await runRecordedJob(world, store, { apiKeyIndex: 2 });
        await finalized();
        await reader(store, vault).syncVault(vault);
      }
      return figures;
    };
    try {
      const read = (await buildStatement(store, period, options)).vaults[0]!;
      expect(calls).toBeGreaterThanOrEqual(3);
      // No state the ledger held: no difference is known, and the statement is not complete.
      expect(read.differenceUnits).toBeNull();
      expect(read.complete).toBe(false);
    } finally {
      ledger.cursorFigures = cursorFigures;
    }
    // Once the ledger holds still, the statement closes on the chain's balance again.
    const read = (await buildStatement(store, period, options)).vaults[0]!;
    expect(read.differenceUnits).toBe(0n);
    expect(read.closingByLedgerUnits).toBe(world.chain.tokenAmount(vault));
  });

  it("resumes a read stopped mid-history without listing any page twice, and two processes never double a line", async () => {
    const vault = vaultOf(3);
    for (let i = 0; i < 12; i++) {
      await runRecordedJob(world, createTestStore(), { apiKeyIndex: 3, consultJobsApi: false });
    }
    await finalized();
    const truth = chainHistory(vault);
    expect(truth.length).toBeGreaterThanOrEqual(24);

    const dir = mkdtempSync(join(tmpdir(), "ledger-"));
    try {
      const file = join(dir, "audit.db");
      const first = openSqliteStore(file);
      migrateStore(first);
      const pages: string[] = [];
      let calls = 0;
      // A process that dies after its third page: the fourth call never returns to it.
      const dying: LedgerRpc = {
        getTransaction: (s) => rpc.getTransaction(s),
        getTokenAccount: (a) => rpc.getTokenAccount(a),
        getSlot: (c) => rpc.getSlot(c),
        getBlockTime: (slot) => rpc.getBlockTime(slot),
        async getSignaturesForAddress(address, o) {
          if (++calls > 3) throw new Error("killed");
          pages.push(o?.before ?? "(top)");
          return rpc.getSignaturesForAddress(address, o);
        },
      };
      await expect(reader(first, vault, dying, 5).syncVault(vault)).rejects.toThrow("killed");
      expect(first.sqlite.prepare("SELECT count(*) FROM ledger_lines").pluck().get()).toBe(15);

      // Two processes (connections) take over at once.
      const second = openSqliteStore(file);
      const third = openSqliteStore(file);
      const counting = (): LedgerRpc => ({
        getTransaction: (s) => rpc.getTransaction(s),
        getTokenAccount: (a) => rpc.getTokenAccount(a),
        getSlot: (c) => rpc.getSlot(c),
        getBlockTime: (slot) => rpc.getBlockTime(slot),
        async getSignaturesForAddress(address, o) {
          pages.push(o?.before ?? "(top)");
          return rpc.getSignaturesForAddress(address, o);
        },
      });
      await Promise.all([
        reader(second, vault, counting(), 5).syncVault(vault),
        reader(third, vault, counting(), 5).syncVault(vault),
      ]);
      const lines = first.sqlite
        .prepare("SELECT signature FROM ledger_lines WHERE vault = ? ORDER BY ord")
        .pluck()
        .all(vault);
      expect(lines).toEqual(truth);
      // The stopped process's pages were never asked for again.
      expect(pages.slice(3)).not.toContain("(top)");
      const s = await statementOf(first, vault);
      expect(s.differenceUnits).toBe(0n);
      expect(s.closingOnChainUnits).toBe(world.chain.tokenAmount(vault));
      expect(s.gaps).toEqual([]);

      // A transaction missing from the history read (as a pruning node would leave it out of
      // its listing) shows as a gap between its neighbours and as the difference to the chain.
      const missing = truth[5]!;
      const missingDelta = (await rpc.getTransaction(missing))!.facts.tokenChanges.find(
        (c) => c.account === vault,
      )!.delta;
      const pruning: LedgerRpc = {
        getTransaction: (sig) => rpc.getTransaction(sig),
        getTokenAccount: (a) => rpc.getTokenAccount(a),
        getSlot: (c) => rpc.getSlot(c),
        getBlockTime: (slot) => rpc.getBlockTime(slot),
        async getSignaturesForAddress(address, o) {
          const page = await rpc.getSignaturesForAddress(address, o);
          return page.filter((e) => e.signature !== missing);
        },
      };
      const holedStore = createTestStore();
      await reader(holedStore, vault, pruning).syncVault(vault);
      const holed = await statementOf(holedStore, vault);
      expect(holed.gaps).toEqual([expect.objectContaining({ missingUnits: missingDelta })]);
      expect(holed.differenceUnits).toBe(missingDelta);
      for (const store of [first, second, third]) store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("explains a lock read before its receipt arrived once the receipt is recorded, without reading the vault again", async () => {
    const vault = vaultOf(3);
    const from = await chainSecondAfter(world);
    const store = createTestStore();
    // The job runs and is recorded elsewhere first (a backend that ingests in batches, late).
    const { jobId } = await runRecordedJob(world, createTestStore(), {
      apiKeyIndex: 3,
      consultJobsApi: false,
    });
    const truth = await groundTruth(world, jobId);
    await finalized();
    const ledger = reader(store, vault);
    await ledger.syncVault(vault);
    const window = async () =>
      (await buildStatement(store, { from, to: Date.now(), vault }, { profile, graceSeconds: 0 }))
        .vaults[0]!;
    const before = await window();
    expect(before.unexplained).toEqual([
      expect.objectContaining({ signature: truth.escrowTx, memoJobId: jobId }),
    ]);
    expect(before.counts).toMatchObject({ locks: 0, returns: 1, unexplained: 1 });

    recordReceipts(
      store,
      [
        {
          jobId,
          escrowTx: truth.escrowTx as string,
          settlementTx: truth.settlementTx as string,
          worker: null,
          creditsRemainingUnits: null,
          model: "qwen3-8b",
          promptTokens: null,
          completionTokens: null,
          totalTokens: null,
          stream: false,
          httpStatus: 200,
          maxTokens: null,
        },
      ],
      "ingest",
    );
    const after = await window();
    expect(after.unexplained).toEqual([]);
    expect(after.counts).toMatchObject({ locks: 1, returns: 1, unexplained: 0 });
    expect(after.differenceUnits).toBe(0n);

    // The next round writes the new kind, so statements no longer work it out.
    await ledger.syncVault(vault);
    const fromSec = from / 1000;
    expect(await ledgerStoreOf(store).reviewLines(vault, fromSec, fromSec + 3600)).toEqual([]);
    expect(await window()).toMatchObject({ counts: { locks: 1, unexplained: 0 } });
  });

  it("gives lines read before their kinds were stored (an upgraded database) their kind in the next round, the statement unchanged", async () => {
    const vault = vaultOf(3);
    // Jobs recorded elsewhere: their locks are unexplained debits in this store.
    for (let i = 0; i < 2; i++) {
      await runRecordedJob(world, createTestStore(), { apiKeyIndex: 3, consultJobsApi: false });
    }
    await finalized();
    const store = createTestStore();
    const ledger = reader(store, vault);
    // One period for the three statements compared, read through by the first sync already:
    // the chain's finalized time must have passed its end (a few ms behind, in whole seconds).
    const to = Date.now();
    await finalizedPast(world, to);
    await ledger.syncVault(vault);
    const statement = async () =>
      (await buildStatement(store, { from: 0, to, vault }, { profile, graceSeconds: 0 }))
        .vaults[0]!;
    const read = await statement();
    expect(read.counts.unexplained).toBeGreaterThan(0);
    // What migration 0006 finds in a database the previous release wrote.
    store.sqlite.exec(`UPDATE ledger_lines SET kind = NULL, job_id = NULL, released = 0,
      header_ok = NULL, gap_after_signature = NULL, gap_after_slot = NULL, gap_units = NULL;
      DELETE FROM ledger_daily; UPDATE ledger_cursors SET chained_ord = NULL;`);
    const upgraded = await statement();
    expect(upgraded.complete).toBe(false);
    expect(upgraded.openingUnits).toBe(read.openingUnits);

    await ledger.syncVault(vault);
    const again = await statement();
    expect(again).toEqual({ ...read, readThrough: again.readThrough });
  });
});

const explorer = { cluster: "custom", rpcUrl: "http://127.0.0.1:8899" } as const;

async function audit(store: SqliteStore, jobId: string) {
  const record = (await auditRecord(store, jobId, explorer))!;
  return {
    verdict: record.verdict,
    failing: record.checks.filter((c) => c.outcome === "fail").map((c) => c.name),
    credits: record.checks.find((c) => c.name === "credits.header"),
  };
}

/** An honest job and one whose credits header is off, by one key, finalized. */
async function honestAndOff(apiKeyIndex: number) {
  const store = createTestStore();
  const honest = await runRecordedJob(world, store, { apiKeyIndex });
  const off = await runRecordedJob(world, store, { apiKeyIndex, fault: "credits-header-off" });
  // The ledger knows a header's span is whole once the chain finalized past the response and
  // the 2 s after it that a chain clock ahead of the recorder's may date a line before it.
  await finalizedPast(world, Date.now() + SETTLEMENT_CLOCK_SLACK_SECONDS * 1000);
  return { store, vault: vaultOf(apiKeyIndex), honest, off };
}

/**
 * `credits.header` on the job: the simulator's `credits-header-off` answers 3 credits more than
 * the vault holds. Keys 0 and 1 (their vaults hold earlier tests' jobs, unrecorded here).
 */
describe("credits.header: the job's check of its credits header against the ledger", () => {
  it("fails exactly credits.header on a header off by 3 credits, and passes an honest one", async () => {
    const { store, vault, honest, off } = await honestAndOff(0);
    await reader(store, vault).syncVault(vault);
    await verifyAll(store);

    const o = await audit(store, off.jobId);
    expect(o.verdict).toBe("discrepancy");
    expect(o.failing).toEqual(["credits.header"]);
    expect(o.credits?.expected).toMatchObject({ vault });

    const h = await audit(store, honest.jobId);
    expect(h.failing).toEqual([]);
    expect(h.credits).toMatchObject({ outcome: "pass", expected: { vault } });
  });

  it("applies the check to jobs verified before the ledger read their vault: the honest one passes where it stands, the other is reopened and fails", async () => {
    const { store, vault, honest, off } = await honestAndOff(1);
    await verifyAll(store);
    // Not applied yet: the verdict stands without it, and the skip names the vault it waits on.
    for (const job of [honest, off]) {
      const a = await audit(store, job.jobId);
      expect(a.failing).toEqual([]);
      expect(a.verdict).not.toBe("discrepancy");
      expect(a.credits).toMatchObject({ outcome: "skip", expected: { vault } });
    }
    // A report taken now (read a minute later, so the recording margin is past) calls no
    // figure of theirs final: the ledger's read may still fail one, as it does below.
    const later = () => Date.now() + 60_000;
    const span = { from: Date.now() - 3_600_000, to: Date.now() + 3_600_000, groupBy: "day" };
    const taken = await reconciliationReport(store, span as ReconciliationQuery, later);
    const createdAt = (jobId: string) =>
      store.sqlite.prepare("SELECT created_at FROM jobs WHERE job_id = ?").pluck().get(jobId);
    expect(taken.totals).toMatchObject({ verified: 2, discrepancies: 0 });
    expect(taken.dataCompleteUntil).toBeLessThanOrEqual(Number(createdAt(off.jobId)));

    const honestBefore = (await audit(store, honest.jobId)).verdict;
    await reader(store, vault).syncVault(vault);
    // The honest header matched a balance: its check passed in place, its verdict never moved.
    // The other was reopened; a second round reopens nothing.
    const passed = await audit(store, honest.jobId);
    expect(passed.verdict).toBe(honestBefore);
    expect(passed.credits).toMatchObject({ outcome: "pass", expected: { vault } });
    expect((await audit(store, off.jobId)).verdict).toBe("pending");
    expect((await createLedgerStore(store).review(vault)).reopened).toBe(0);

    await verifyAll(store);
    const o = await audit(store, off.jobId);
    expect(o.verdict).toBe("discrepancy");
    expect(o.failing).toEqual(["credits.header"]);
    const h = await audit(store, honest.jobId);
    expect(h.failing).toEqual([]);
    expect(h.credits?.outcome).toBe("pass");
    // Applied now: the next ledger round leaves them alone, and the figures are final.
    expect((await createLedgerStore(store).review(vault)).reopened).toBe(0);
    const settled = await reconciliationReport(store, span as ReconciliationQuery, later);
    expect(settled.totals).toMatchObject({ verified: 1, discrepancies: 1 });
    expect(settled.dataCompleteUntil).toBeGreaterThan(Number(createdAt(off.jobId)));
  });
});

describe("a statement taken before a lock of its period is due", () => {
  it("is not complete, and names the lock still out and when it is due", async () => {
    const store = createTestStore();
    const vault = vaultOf(2);
    // A whole second the chain's clock has reached: block times are seconds, and a slot begun
    // before the second on the host's clock would date the first lock before the period.
    const from = await chainSecondAfter(world);
    await runRecordedJob(world, store, { apiKeyIndex: 2 });
    const { jobId } = await runRecordedJob(world, store, {
      apiKeyIndex: 2,
      fault: "unreleased-lock",
    });
    const truth = await groundTruth(world, jobId);
    await finalized();
    const to = Date.now();
    await finalizedPast(world, to);
    await reader(store, vault).syncVault(vault);

    // Taken at once, as a month-end run a few minutes after midnight takes last month's: the
    // lock's settlement window has not passed, so no statement can call it unreleased yet.
    const tenMinutes: Profile = { ...profile, settlementWindowSeconds: 600 };
    const early = await buildStatement(
      store,
      { from, to, vault },
      { profile: tenMinutes, graceSeconds: 0 },
    );
    const s = early.vaults[0]!;
    expect(s.historyRead).toBe(true);
    expect(s.unreleasedLocks).toEqual([]);
    expect(s.complete).toBe(false);
    expect(s.locksNotDue).toEqual([
      expect.objectContaining({
        jobId,
        signature: truth.escrowTx,
        lockUnits: BigInt(truth.lockUnits as string),
        outstandingUnits: BigInt(truth.lockUnits as string),
      }),
    ]);
    expect(s.counts).toMatchObject({ locks: 2, unreleasedLocks: 0, locksNotDue: 1 });
    const csv = statementToCsv(early).split("\r\n");
    expect(csv.find((l) => l.startsWith("vault,"))).toContain(",false,");
    expect(csv.find((l) => l.startsWith("lock_not_due,"))).toMatch(
      new RegExp(`^lock_not_due,${vault},.*,${truth.escrowTx},.*,${truth.lockUnits},${jobId},`),
    );
    const period = {
      firstDay: "",
      lastDay: "",
      query: "",
      timeZone: "UTC",
    } as unknown as DashboardPeriod;
    const page = String(statementBody(period, early));
    expect(page).toContain("not due yet");
    expect(page).not.toContain("No finding in this period.");

    // Once it is due (the one-second window, read past), the same period's statement names it
    // unreleased and is complete.
    await lockDue(s.locksNotDue.find((l) => l.jobId === jobId)?.lockedAt);
    await reader(store, vault).syncVault(vault);
    const due = (await buildStatement(store, { from, to, vault }, { profile, graceSeconds: 0 }))
      .vaults[0]!;
    expect(due.unreleasedLocks.map((u) => u.jobId)).toEqual([jobId]);
    expect(due.locksNotDue).toEqual([]);
    expect(due.complete).toBe(true);
  });
});
