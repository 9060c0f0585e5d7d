import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { holdingRelay } from "./support/holding-relay.js";
import { type CliProcess, startCli, startServe, until } from "./support/service-process.js";
import { simulatorReceiptsFile } from "./support/world-traffic.js";

/**
 * The host's clock stepped forward (NTP correcting a clock that ran behind, a VM resumed) while
 * the nightly `verify` and `serve` run on one SQLite file. Job leases on SQLite are written and
 * judged on the host's wall clock: a step past the lease length made every lease of the live
 * nightly run look expired to serve's verifier.
 */

const STEP_MS = 10 * 60_000;

let world: LocalWorld;
let dir: string;
let db: string;
let shiftFile: string;

beforeAll(async () => {
  world = await startLocalWorld({ slotMs: 20, finalitySlots: 3 });
  dir = mkdtempSync(join(tmpdir(), "clock-forward-"));
  db = join(dir, "audit.db");
  shiftFile = join(dir, "clock-shift");
  writeFileSync(shiftFile, "0");
});

afterAll(async () => {
  await world?.close();
});

describe("a forward clock step with serve and the nightly verify on one SQLite file", () => {
  it("serve's verifier leaves the jobs a live nightly run holds; every job judged once", async () => {
    const jobs = 6;
    const file = join(dir, "receipts.jsonl");
    const ids = await simulatorReceiptsFile(world, file, { jobs, prefix: "s" });
    expect(await startCli(["db", "migrate", "--db", db]).exited).toBe(0);
    const imported = startCli(["import", file, "--db", db], { AUDIT_PROFILE: "localnet" });
    expect({ code: await imported.exited, stderr: imported.stderr() }).toEqual({
      code: 0,
      stderr: expect.any(String),
    });

    const relay = holdingRelay(world.rpcUrl);
    const relayUrl = await relay.listen();
    const stepped = {
      NODE_OPTIONS: `--import ${join(import.meta.dirname, "support", "clock-step.mjs")}`,
      CLOCK_SHIFT_FILE: shiftFile,
    };
    try {
      // The nightly run's node answers no status while held: its round holds the leases.
      relay.hold();
      const verify = startCli(
        ["verify", "--since", "1h", "--timeout", "20s", "--json", "--db", db],
        { SOLANA_RPC_URLS: relayUrl, AUDIT_PROFILE: "localnet", VERIFY_POLL_MS: "300", ...stepped },
      );
      await until(() => relay.statusAsks() > 0, 15_000);
      const serve = await startServe(db, {
        SOLANA_RPC_URLS: world.rpcUrl,
        DECENTRAL_BASE_URL: world.decentralBaseUrl,
        VERIFY_POLL_MS: "300",
        ...stepped,
      });
      try {
        const judgedBy = (proc: CliProcess) =>
          proc.logs.filter((l) => l.msg === "job verdict").map((l) => String(l.jobId));
        // Before the step serve's verifier (polling every 300 ms) leaves the leased jobs alone.
        await new Promise((r) => setTimeout(r, 1_000));
        expect(judgedBy(serve)).toEqual([]);
        // The host's clock steps 10 minutes forward under both; a few polls of serve's on it.
        writeFileSync(shiftFile, String(STEP_MS));
        await new Promise((r) => setTimeout(r, 1_500));
        relay.release();
        const started = performance.now();
        const code = await verify.exited;
        const ms = Math.round(performance.now() - started);
        if (process.env.CLOCK_STEP_TIMES) console.log({ code, ms });
        expect({ code, stderr: verify.stderr() }).toEqual({
          code: 0,
          stderr: expect.stringContaining(`${jobs}/${jobs} final (verified ${jobs},`),
        });
        // Each job judged once, by the run that held it: serve took none of its leases.
        expect(judgedBy(serve)).toEqual([]);
        const store = openSqliteStore(db);
        try {
          const rows = store.sqlite
            .prepare("SELECT verdict, count(*) AS n FROM jobs GROUP BY verdict")
            .all();
          expect(rows).toEqual([{ verdict: "verified", n: jobs }]);
          // Every check row written by the nightly run's verifier.
          const judged = store.sqlite
            .prepare(
              `SELECT DISTINCT c.job_id AS jobId, r.trigger FROM check_results c
               JOIN verification_runs r ON r.id = c.run_id ORDER BY c.job_id`,
            )
            .all();
          expect(judged).toEqual(ids.sort().map((jobId) => ({ jobId, trigger: "verify" })));
        } finally {
          store.close();
        }
      } finally {
        serve.child.kill("SIGTERM");
        await serve.exited;
      }
    } finally {
      relay.release();
      await relay.close();
    }
  }, 60_000);
});
