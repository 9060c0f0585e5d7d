import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { checkResults, jobs } from "../src/db/schema.js";
import { type LocalWorld, startLocalWorld } from "../src/localnet/world.js";
import { programModules } from "./support/service-process.js";
import { runRecordedJob } from "./support/verify-jobs.js";

type ChildEvent = { event: string; final?: number; total?: number; summary?: { status: string } };

let world: LocalWorld;
beforeAll(async () => {
  world = await startLocalWorld({ slotMs: 10, finalitySlots: 3 });
});
afterAll(async () => {
  await world?.close();
});

/**
 * Runs the verifier in a child process over `db`; SIGKILLs it at the first event for which
 * `killWhen` is true. Resolves with how it ended and the events it reported.
 */
function runChild(db: string, owner: string, killWhen?: (e: ChildEvent) => boolean) {
  const program = programModules();
  const modules = [
    "chain/rpc-pool",
    "db/client",
    "db/migrate",
    "log",
    "verify/engine",
    "verify/profiles",
  ];
  const child: ChildProcess = spawn(
    process.execPath,
    [...program.nodeArgs, join(import.meta.dirname, "support", "verify-child.mjs")],
    {
      env: {
        ...process.env,
        VERIFY_MODULES: JSON.stringify(Object.fromEntries(modules.map((m) => [m, program.url(m)]))),
        VERIFY_DB: db,
        VERIFY_RPC: world.rpcUrl,
        VERIFY_OWNER: owner,
        VERIFY_LEASE_MS: "300",
        VERIFY_CLAIM_BATCH: "3",
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const events: ChildEvent[] = [];
  createInterface({ input: child.stdout! }).on("line", (line) => {
    const event = JSON.parse(line) as ChildEvent;
    events.push(event);
    if (killWhen?.(event) && child.exitCode === null) child.kill("SIGKILL");
  });
  return new Promise<{ signal: NodeJS.Signals | null; code: number | null; events: ChildEvent[] }>(
    (resolve) => child.on("exit", (code, signal) => resolve({ code, signal, events })),
  );
}

describe("a verification run killed with SIGKILL", () => {
  it("resumes after each kill and ends with every job final, none lost, no check twice", async () => {
    const dir = mkdtempSync(join(tmpdir(), "verify-crash-"));
    const db = join(dir, "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    const expected = new Map<string, string>();
    for (let i = 0; i < 8; i++) {
      const { jobId } = await runRecordedJob(world, store, { stream: i % 3 === 0 });
      expected.set(jobId, "verified");
    }
    const faulty = await runRecordedJob(world, store, { fault: "underpay-worker" });
    expected.set(faulty.jobId, "discrepancy");

    // Killed mid-round: statuses stored, leases held, a transaction being fetched.
    const first = await runChild(db, "crash-1", (e) => e.event === "fetch");
    // Killed right after a round committed some verdicts.
    const second = await runChild(
      db,
      "crash-2",
      (e) => e.event === "progress" && (e.final ?? 0) > 0,
    );
    // Killed as soon as it has done anything.
    const third = await runChild(
      db,
      "crash-3",
      (e) => e.event === "statuses" || e.event === "progress",
    );
    expect([first.signal, second.signal, third.signal]).toEqual(["SIGKILL", "SIGKILL", "SIGKILL"]);

    const last = await runChild(db, "survivor");
    expect(last.code).toBe(0);
    expect(last.events.at(-1)).toMatchObject({ event: "done", summary: { status: "completed" } });

    const rows = store.db.select().from(jobs).all();
    expect(new Map(rows.map((r) => [r.jobId, r.verdict]))).toEqual(expected);
    expect(rows.every((r) => r.leaseOwner === null)).toBe(true);
    const twice = store.db
      .select({ jobId: checkResults.jobId, name: checkResults.name, n: sql<number>`count(*)` })
      .from(checkResults)
      .groupBy(checkResults.jobId, checkResults.name)
      .having(sql`count(*) > 1`)
      .all();
    expect(twice).toEqual([]);
    const perJob = store.db
      .select({ jobId: checkResults.jobId, n: sql<number>`count(*)` })
      .from(checkResults)
      .groupBy(checkResults.jobId)
      .all();
    // Every job has its full set of checks: the same number for all of them.
    expect(perJob).toHaveLength(expected.size);
    expect(new Set(perJob.map((p) => p.n)).size).toBe(1);
    store.close();
  });
});
