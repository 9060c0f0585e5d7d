import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLedgerReader } from "../src/ledger/reader.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { createVerifier } from "../src/verify/engine.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { type AdversaryHarness, startAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * A nightly run reads its credit vaults after its jobs are final, often long after its window
 * ended (a catch-up run, a job phase of minutes beside busy services). It read every line
 * listed by then, fetching each transaction no verifier had fetched yet: the jobs of the hours
 * after the window, 2 getTransaction each. Beside traffic at load 23 with RPC_RATE_LIMIT=8 the
 * ledger phase never caught up and the run timed out (exit 2) with every job verified. The run
 * judges nothing after its window's end plus the settlement window and grace: what lies beyond
 * is read by the services' ledger round or the next night.
 */
const log = createLogger({ level: "silent" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  let h: AdversaryHarness;
  beforeAll(async () => {
    h = await startAdversaryHarness({ openStore: () => stores.open() });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("fetches no transaction of the traffic after the window's settlement window and grace", async () => {
    const c = await h.scenario();
    const from = Math.ceil((Date.now() + 200) / 1000) * 1000;
    await sleep(from - Date.now());
    const first = await c.pinKey(1);
    const vault = first.vault;
    const plan = h.op.plan({ keyIndex: 1 });
    const txs = h.op.honestJob(plan);
    c.record(plan, txs);
    c.honestJobsApi(plan, txs);
    await c.flush();
    const to = Math.ceil((h.op.now() + 1) / 1000) * 1000;
    await sleep(to - Date.now() + 50);
    // The chain's clock past the settlement window and grace: jobs of later hours, recorded
    // after the window, that no verifier has fetched yet.
    h.op.advanceClock((c.profile.settlementWindowSeconds + 60) * 1000);
    const later: string[] = [];
    for (let i = 0; i < 4; i++) {
      const p = h.op.plan({ keyIndex: 1 });
      const t = h.op.honestJob(p);
      c.record(p, t);
      later.push(t.escrowTx, t.settlementTx);
    }
    await c.flush();
    await h.finalized();

    const fetched: string[] = [];
    const rpc: typeof h.rpc = Object.create(h.rpc);
    rpc.getTransaction = (signature, ...rest) => {
      fetched.push(signature);
      return h.rpc.getTransaction(signature, ...rest);
    };
    const custody = { vaults: [vault], byKey: {} };
    const reader = createLedgerReader({ store: c.store, rpc, profile: c.profile, log, custody });
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
    expect(run.byVerdict.verified).toBe(2);
    expect(run.ledger?.incomplete).toBeNull();
    expect(run.ledger?.unreleasedLocks).toEqual([]);
    expect(run.ledger?.unreceiptedDebits).toEqual([]);
    expect(fetched.filter((s) => later.includes(s))).toEqual([]);

    // The services' ledger round (no bound) reads the rest as before.
    const rest = await reader.syncVault(vault);
    expect(rest.pending).toBe(0);
    expect(rest.fetched).toBe(later.length);
    expect(await createLedgerStore(c.store).listedSignatures(vault)).toEqual([]);
  });
});
