import { describe, expect, it } from "vitest";
import { createLedgerReader } from "../src/ledger/reader.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../src/store/ledger-rules.js";
import { createVerifier } from "../src/verify/engine.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { chainSecondAfter } from "./support/finality.js";
import { useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * A nightly run reads its credit vaults after its jobs are final, often long after its window
 * ended (a catch-up run, a job phase of minutes beside busy services). It read every line
 * listed by then, fetching each transaction no verifier had fetched yet: the jobs of the hours
 * after the window, 2 getTransaction each. Beside traffic at load 23 with RPC_RATE_LIMIT=8 the
 * ledger phase never caught up and the run timed out (exit 2) with every job verified. The run
 * judges nothing after its window's end but the returns of its locks: it reads on past the end
 * only while one is out (up to the settlement window and grace), and leaves the rest to the
 * services' ledger round or the next night.
 */
const log = createLogger({ level: "silent" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  it("reads past the window's end only while a lock of it is out, fetching none of the later traffic", async () => {
    const c = await h.scenario();
    const from = await chainSecondAfter(h.world, 200);
    const first = await c.pinKey(1);
    const vault = first.vault;
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    // The window's last lock, settled only after the window's end.
    const last = h.op.plan({ keyIndex: 1 });
    const lastLock = h.op.send(h.op.lockIxs(last)).signature;
    // Its receipt in the window names the lock; the jobs API names the settlement later.
    c.record(last, { escrowTx: lastLock, settlementTx: null });
    await c.flush();
    const to = Math.ceil((h.op.now() + 1) / 1000) * 1000;
    await sleep(to - Date.now() + 50);
    const lastTxs = { escrowTx: lastLock, settlementTx: h.op.send(h.op.settleIxs(last)).signature };
    c.honestJobsApi(last, lastTxs);
    // Jobs after the window and the seconds its last credits headers span (read for them),
    // recorded after it, that no verifier has fetched yet: within the settlement window and
    // grace of its end, then past them.
    const later: string[] = [];
    const laterJobs = () => {
      for (let i = 0; i < 3; i++) {
        const p = h.op.plan({ keyIndex: 1 });
        const t = h.op.honestJob(p);
        c.record(p, t);
        later.push(t.escrowTx, t.settlementTx);
      }
    };
    h.op.advanceClock(SETTLEMENT_CLOCK_SLACK_SECONDS * 1000);
    laterJobs();
    h.op.advanceClock((c.profile.settlementWindowSeconds + 60) * 1000);
    laterJobs();
    await c.flush();
    await h.finalized();

    const fetched: string[] = [];
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc.getTransaction = (signature, ...rest) => {
      fetched.push(signature);
      return h.rpc.getTransaction(signature, ...rest);
    };
    const custody = { vaults: [vault], byKey: {} };
    const reader = createLedgerReader({
      store: c.store,
      rpc,
      profile: c.profile,
      log,
      custody,
      options: { fetchConcurrency: 2 },
    });
    const run = await runNightlyVerification(
      c.store,
      createVerifier({
        store: c.store,
        rpc,
        profile: c.profile,
        log,
        custody,
        options: quickVerifierOptions,
      }),
      {
        from,
        to,
        timeoutMs: 20_000,
        preflight: () => rpc.getSlot("finalized"),
        ledger: ledgerWindowCheck({ store: c.store, reader, profile: c.profile, graceSeconds: 0 }),
      },
    );
    expect(run).toMatchObject({ outcome: "verified", exitCode: 0, reason: null });
    expect(run.byVerdict.verified).toBe(3);
    expect(run.ledger?.incomplete).toBeNull();
    expect(run.ledger?.unreleasedLocks).toEqual([]);
    expect(run.ledger?.unreceiptedDebits).toEqual([]);
    // The part read with the last lock's return (2 lines at a time) holds the next line at most.
    const fetchedLater = fetched.filter((s) => later.includes(s)).length;
    expect(fetchedLater).toBeLessThanOrEqual(1);

    // The services' ledger round (no bound) reads the rest as before.
    const rest = await reader.syncVault(vault);
    expect(rest.pending).toBe(0);
    expect(rest.fetched + fetchedLater).toBe(later.length);
    expect(await createLedgerStore(c.store).listedSignatures(vault)).toEqual([]);
  });
});
