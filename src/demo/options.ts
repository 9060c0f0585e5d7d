import { parseDatabaseUrl } from "../db/url.js";
import { AppError, wholeNumberFlag } from "../errors.js";

/** What `decentral-audit demo` runs; the CLI flags map onto the first four. */
export interface DemoOptions {
  /** Exit after the report instead of keeping the API up. Default false. */
  once: boolean;
  /** Requests sent through the recording proxy, at least `MIN_DEMO_JOBS`. Default 60. */
  jobs: number;
  /** Port of the decentral-audit API; 0 picks a free port. Default 8787. */
  port: number;
  /** SQLite file of the demo. Default `./data/demo.db`; the report covers this run only. */
  db: string;
  /** Requests in flight at once. Default 8. */
  concurrency: number;
  /** Wall-clock milliseconds per slot of the local chain. Default 25 (see `run-demo.ts`). */
  slotMs: number;
  /** Slots until a transaction is finalized. Default 32, as on mainnet. */
  finalitySlots: number;
  /** The verifier's status poll interval (VERIFY_POLL_MS). Default 200. */
  verifyPollMs: number;
  /** Longest wait for every job's final verdict, in ms. Default 90,000. */
  verifyTimeoutMs: number;
}

/**
 * One request of each error the network can answer (402, 503, 504) plus one job of each chain
 * fault: fewer requests than this could not show every kind of finding.
 */
export const MIN_DEMO_JOBS = 12;
export const MAX_DEMO_JOBS = 2000;

export const defaultDemoOptions: DemoOptions = {
  once: false,
  jobs: 60,
  port: 8787,
  db: "./data/demo.db",
  concurrency: 8,
  slotMs: 25,
  finalitySlots: 32,
  verifyPollMs: 200,
  verifyTimeoutMs: 90_000,
};

/** Flags of `decentral-audit demo`, as commander parses them. */
export interface DemoFlags {
  once?: boolean;
  jobs?: string;
  port?: string;
  db?: string;
}

/** Validates the flags into demo options; a bad flag is an AppError naming it (exit code 2). */
export function demoOptionsFromFlags(flags: DemoFlags): DemoOptions {
  const options: DemoOptions = { ...defaultDemoOptions, once: flags.once === true };
  if (flags.jobs !== undefined) {
    options.jobs = wholeNumberFlag("jobs", flags.jobs, MIN_DEMO_JOBS, MAX_DEMO_JOBS);
  }
  if (flags.port !== undefined) options.port = wholeNumberFlag("port", flags.port, 0, 65_535);
  if (flags.db !== undefined) {
    if (flags.db.trim() === "") {
      throw new AppError("validation_failed", "--db: expected a file path", { field: "db" });
    }
    // Checked before the demo's log folder is made beside a database file.
    parseDatabaseUrl(flags.db);
    options.db = flags.db;
  }
  return options;
}
