import { createServer } from "node:net";
import { createToken } from "../auth/tokens.js";
import { loadConfig } from "../config.js";
import { AppError } from "../errors.js";
import { startLocalWorld } from "../localnet/world.js";
import { createLogger, type Logger } from "../log.js";
import { type Service, startService } from "../main.js";
import { isoOf } from "../reports/period.js";
import type { RunProgress } from "../verify/engine.js";
import type { DemoOptions } from "./options.js";
import {
  type Finding,
  formatFindings,
  formatReconciliation,
  runFindings,
  runReconciliation,
} from "./report.js";
import { formatSelfCheck, selfCheck } from "./self-check.js";
import { driveTraffic, planTraffic } from "./traffic.js";

/**
 * `decentral-audit demo`: the local chain, the Decentral simulator and decentral-audit in one
 * process; traffic through the recording proxy with the `openai` SDK; verification; the
 * report; a self-check against the simulator's ground truth; then the API stays up.
 *
 * Timing. The chain runs 25 ms slots with mainnet's 32 slots to finality (0.8 s), below the
 * 40-100 ms one might pick, because the slowest finding bounds the run: a settlement signature
 * that never lands (`phantom-signature`) can only be called dropped once the `localnet`
 * profile's drop window of 300 slots has passed since the verifier first missed it, and the
 * verifier looks again at such a signature with doubling delays (200 ms, 400 ms, ... at a
 * 200 ms poll). At 25 ms the window is 7.5 s and the sixth look (about 12.6 s, 9.5 s at the
 * earliest) is certain to be past it; at 40 ms (12 s) that look could fall just short, and the
 * next one is 12.8 s later. The whole run stays well under a minute on two cores.
 */

/** Where the demo writes. `status` overwrites one live line (a terminal); without it, none. */
export interface DemoIo {
  out(line: string): void;
  status?(line: string): void;
  /** The service's logger. Default: info-level JSON lines on stdout. */
  log?: Logger;
  /** Where that logger writes, to tell the reader. */
  logFile?: string;
}

/** Exit codes: 0 everything as expected, 1 the self-check failed, 130 interrupted. */
export const DEMO_EXIT = { ok: 0, selfCheckFailed: 1, interrupted: 130 } as const;

const HOST = "127.0.0.1";

/** Fails early and clearly when the API port is taken (the server would otherwise crash). */
async function ensurePortFree(port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        error.code === "EADDRINUSE"
          ? new AppError(
              "conflict",
              `--port: ${HOST}:${port} is in use; pick another port (0 picks a free one)`,
              { field: "port" },
            )
          : error,
      );
    });
    probe.listen(port, HOST, () => probe.close(() => resolve()));
  });
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function progressText(p: RunProgress): string {
  const open =
    p.byVerdict.pending +
    p.byVerdict.awaiting_finality +
    p.byVerdict.error +
    p.byVerdict.rpc_disagreement;
  return `verifying ${p.final}/${p.total} final: verified ${p.byVerdict.verified}, partially verified ${p.byVerdict.partially_verified}, discrepancy ${p.byVerdict.discrepancy}, dropped ${p.byVerdict.dropped}, waiting ${open}`;
}

/**
 * Runs the demo. With `once` it resolves after the report; otherwise it keeps the API up until
 * `signal` aborts (Ctrl-C). Resolves with the exit code (`DEMO_EXIT`).
 */
export async function runDemo(
  options: DemoOptions,
  io: DemoIo,
  signal?: AbortSignal,
): Promise<number> {
  const started = Date.now();
  const status = (line: string) => io.status?.(line);
  await ensurePortFree(options.port);

  const world = await startLocalWorld({
    host: HOST,
    slotMs: options.slotMs,
    finalitySlots: options.finalitySlots,
  });
  let service: Service | undefined;
  try {
    // The demo ignores the environment: it always runs against its own world.
    const config = loadConfig(
      {},
      {
        DATABASE_URL: options.db,
        SOLANA_RPC_URLS: world.rpcUrl,
        DECENTRAL_BASE_URL: world.decentralBaseUrl,
        AUDIT_PROFILE: "localnet",
        HOST,
        PORT: String(options.port),
        // The local RPC has no rate limit; the pool's default of 8/s is for public endpoints.
        RPC_RATE_LIMIT: "1000",
        RPC_CONCURRENCY: "8",
        VERIFY_POLL_MS: String(options.verifyPollMs),
      },
    );
    service = await startService(config, io.log ?? createLogger({ level: config.LOG_LEVEL }));
    io.out("decentral-audit demo: everything below runs in this process");
    io.out(
      `  local chain      ${world.rpcUrl}  (${options.slotMs} ms slots, finalized after ${options.finalitySlots} slots)`,
    );
    io.out(`  Decentral sim    ${world.decentralBaseUrl}  (ground truth: /sim/jobs)`);
    io.out(`  decentral-audit  ${service.url}  (profile localnet, database ${options.db})`);
    if (io.logFile) io.out(`  its log          ${io.logFile}`);
    io.out("");

    // Receipts are stamped with the time their request started: this run's are from here on.
    const from = Date.now();
    const plan = planTraffic(options.jobs, options.concurrency);
    const trafficStarted = Date.now();
    const outcomes = await driveTraffic(
      plan,
      {
        baseUrl: `${service.url}/v1`,
        apiKeys: world.apiKeys,
        lowBalanceApiKey: world.lowBalanceApiKey,
      },
      {
        concurrency: options.concurrency,
        onProgress: (done, total) => status(`traffic ${done}/${total} requests`),
      },
    );
    status("");
    io.out(
      `traffic    ${outcomes.length} requests through the proxy with the openai SDK, ${options.concurrency} at a time, in ${seconds(Date.now() - trafficStarted)}`,
    );

    const run = await service.verifier.runUntilSettled(
      { from },
      {
        timeoutMs: options.verifyTimeoutMs,
        ...(signal ? { signal } : {}),
        onProgress: (p) => status(progressText(p)),
      },
    );
    status("");
    if (run.status === "interrupted") {
      io.out("interrupted");
      return DEMO_EXIT.interrupted;
    }
    io.out(`${progressText(run)} in ${seconds(run.durationMs)}`);

    const truth = world.jobs.allJobs();
    const injected = new Map(truth.map((t) => [t.jobId, t.fault as string | null]));
    const report = await runReconciliation(service.store, from, Date.now() + 1);
    const findings: Finding[] = await runFindings(service.store, from);
    const check = await selfCheck({ store: service.store, from, outcomes, truth, run });

    io.out("");
    io.out("Reconciliation of this run, by model (USDC)");
    for (const line of formatReconciliation(report)) io.out(line);
    io.out("");
    io.out(`Discrepancies: ${findings.length} jobs with failing checks`);
    for (const line of formatFindings(findings, injected)) io.out(line);
    io.out("");
    io.out("Self-check against the simulator's ground truth");
    for (const line of formatSelfCheck(check)) io.out(line);
    io.out("");
    const exitCode = check.ok ? DEMO_EXIT.ok : DEMO_EXIT.selfCheckFailed;
    io.out(
      `demo ${check.ok ? "passed" : "FAILED"} in ${seconds(Date.now() - started)} (exit code ${exitCode})`,
    );
    if (options.once) return exitCode;

    const { token } = await createToken(service.store, { role: "read", name: "demo" });
    const sample = findings[0]?.jobId ?? truth[0]?.jobId ?? "<jobId>";
    io.out("");
    io.out(`The API stays up at ${service.url}`);
    io.out(`  read token  ${token}`);
    // Every route but /healthz needs the token: each line is a command that works as printed.
    const apiUrl = service.url;
    const curl = (path: string) => `curl -H "Authorization: Bearer ${token}" "${apiUrl}${path}"`;
    const period = `from=${isoOf(from)}&to=${isoOf(report.to)}`;
    io.out(`  try         ${curl(`/audit/${sample}`)}`);
    io.out(`  also        ${curl(`/reports/discrepancies?${period}`)}`);
    io.out(`              ${curl(`/reports/reconciliation?groupBy=model&${period}`)}`);
    io.out(`              ${curl("/openapi.json")} (every route)`);
    io.out("Ctrl-C to stop.");
    if (signal && !signal.aborted) {
      await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve()));
    }
    return exitCode;
  } finally {
    await service?.close();
    await world.close();
  }
}
