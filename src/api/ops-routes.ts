import { createRoute, z } from "@hono/zod-openapi";
import type { QuorumStatus } from "../chain/quorum.js";
import type { Store } from "../db/client.js";
import type { WriterHealth } from "../recorder/receipt-writer.js";
import { createOpsStore } from "../store/ops.js";
import type { ProfileStatus } from "../verify/profile-status.js";
import type { AppMetrics } from "./metrics.js";
import { authErrors, noQueryParameters } from "./openapi-schemas.js";
import { createRouter } from "./router.js";

/** Probes of `/readyz`, injected by the composition root; each optional. */
export interface ReadinessProbes {
  /**
   * Resolves when an RPC endpoint answers (e.g. `getSlot`); rejects otherwise. `signal` is
   * aborted when the probe is given up on (`rpcTimeoutMs`): the call need not go on. Resolved
   * with `{ detail }`, ready with that said (a quorum member down while the rest still answer).
   */
  rpc?: (signal: AbortSignal) => Promise<unknown>;
  /** Longest acceptable age of the oldest non-final job, in seconds. Default 3600. */
  maxLagSeconds?: number;
  /** How long the RPC probe may take, in milliseconds. Default 3000. */
  rpcTimeoutMs?: number;
  /** The protocol profile's gaps and learned facts (informational: never fails readiness). */
  profile?: () => Promise<ProfileStatus>;
  /** The RPC quorum's standing (`RPC_QUORUM` above 1), else null (informational). */
  rpcQuorum?: () => QuorumStatus | null;
  /** The receipt writer's view of the database: unreachable while receipts wait for it. */
  receipts?: () => WriterHealth;
  /** How long the database probe may take, in milliseconds. Default 3000. */
  databaseTimeoutMs?: number;
  /**
   * Whether this process's background work (verifier, backfill, ledger) runs, or which process
   * runs it. Not running fails readiness: receipts are recorded but nothing verifies them.
   */
  background?: () => { ok: boolean; detail: string };
}

export interface OpsRoutesDeps {
  store: Store;
  now: () => number;
  metrics: AppMetrics;
  readiness?: ReadinessProbes;
}

const ProbeSchema = z.object({ ok: z.boolean(), detail: z.string().optional() });
const ReadinessSchema = z
  .object({
    ok: z.boolean(),
    checks: z.object({
      database: ProbeSchema,
      rpc: ProbeSchema,
      verificationLag: ProbeSchema.extend({
        seconds: z
          .number()
          .nullable()
          .describe("null while the database cannot be asked: unknown, not 0"),
        maxSeconds: z.number(),
      }),
      background: ProbeSchema.optional().describe(
        "the verifier, backfill and ledger of this process: running, starting, or run by another process",
      ),
    }),
    profile: z
      .object({
        name: z.string(),
        id: z
          .string()
          .describe(
            "name@ the first 16 hex digits of the SHA-256 of the profile's content, as a verdict's `verdictProfile` names it",
          ),
        gaps: z.array(z.object({ check: z.string(), reason: z.string() })),
        treasury: z.record(z.string(), z.unknown()),
      })
      .optional()
      .describe("what the protocol profile cannot check for any job, and what was learned instead"),
    rpcQuorum: z
      .object({
        quorum: z.number(),
        jobsInDisagreement: z.number(),
        endpoints: z.array(
          z.object({
            endpoint: z.string(),
            outvoted: z.number(),
            unresolved: z.number(),
            consecutiveOutvoted: z.number(),
            setAside: z.boolean(),
            setAsideUntil: z.number().nullable(),
          }),
        ),
      })
      .optional()
      .describe(
        "RPC_QUORUM: endpoints that disagreed with the others, those set aside, and jobs waiting in rpc_disagreement",
      ),
  })
  .openapi("Readiness");

/**
 * Whether the database answers within the probe's timeout, and whether the receipt writer has
 * receipts waiting for it (a database that went away and came back answers the probe before
 * the writer has caught up). Never throws.
 */
async function probeDatabase(
  ping: () => Promise<unknown>,
  probes: ReadinessProbes | undefined,
): Promise<{ ok: boolean; detail?: string }> {
  const health = probes?.receipts?.();
  if (health && !health.reachable) {
    return {
      ok: false,
      detail: `${health.refusing ? "refusing writes" : "unreachable"} since ${new Date(health.since).toISOString()} (${health.error}); ${health.waiting} receipt writes waiting`,
    };
  }
  try {
    await withTimeout(ping(), probes?.databaseTimeoutMs ?? 3000);
    return { ok: true };
  } catch (error) {
    return { ok: false, detail: `unreachable (${causeOf(error)})` };
  }
}

/**
 * What went wrong, at its root: the query builder wraps a driver's error ("Failed query: SELECT
 * 1") and keeps the useful part (connect ECONNREFUSED ...) as its cause.
 */
function causeOf(error: unknown): string {
  let e = error;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}

/**
 * `work`, or a rejection saying it gave no answer within `timeoutMs`; `givenUp` is then aborted,
 * so that work that heeds it stops.
 */
async function withTimeout<T>(
  work: Promise<T>,
  timeoutMs: number,
  givenUp?: AbortController,
): Promise<T> {
  // A read given up on may still fail later: that is not an unhandled rejection.
  work.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          givenUp?.abort();
          reject(new Error(`no answer within ${timeoutMs} ms`));
        }, timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Asks the RPC probe with a timeout; never throws (`/readyz` and the dashboard's status page). */
export async function probeRpc(
  probes: ReadinessProbes | undefined,
): Promise<{ ok: boolean; detail?: string }> {
  const rpc = probes?.rpc;
  if (!rpc) return { ok: true, detail: "no RPC probe configured" };
  try {
    const givenUp = new AbortController();
    const answer = await withTimeout(rpc(givenUp.signal), probes.rpcTimeoutMs ?? 3000, givenUp);
    const detail = (answer as { detail?: unknown } | null)?.detail;
    return typeof detail === "string" ? { ok: true, detail } : { ok: true };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Said in words, first: "connect ECONNREFUSED" deep in the pool's message is easy to miss,
    // and nothing listening there is another fix than a node that is slow or hung.
    return {
      ok: false,
      detail: /\bECONNREFUSED\b/.test(message) ? `connection refused (${message})` : message,
    };
  }
}

/** `/readyz` and `/metrics` (role read). */
export function opsRoutes(deps: OpsRoutesDeps) {
  const readyz = createRoute({
    method: "get",
    path: "/readyz",
    tags: ["operations"],
    summary: "Readiness: database, RPC reachable, verification lag, background work running",
    middleware: noQueryParameters,
    responses: {
      200: { content: { "application/json": { schema: ReadinessSchema } }, description: "Ready." },
      ...authErrors,
      503: {
        content: { "application/json": { schema: ReadinessSchema } },
        description: "Not ready; `checks` says which part failed.",
      },
    },
  });

  const metrics = createRoute({
    method: "get",
    path: "/metrics",
    tags: ["operations"],
    summary: "Prometheus metrics",
    middleware: noQueryParameters,
    responses: {
      200: {
        content: { "text/plain": { schema: z.string() } },
        description: "Prometheus text exposition format.",
      },
      ...authErrors,
    },
  });

  const ops = createOpsStore(deps.store);
  return createRouter({ store: deps.store, role: "read" })
    .openapi(readyz, async (c) => {
      const database = await probeDatabase(() => ops.ping(), deps.readiness);
      const rpc = await probeRpc(deps.readiness);
      const maxSeconds = deps.readiness?.maxLagSeconds ?? 3600;
      const at = deps.now();
      // The reads below touch `jobs`, which the ping does not: under a lock held on it (a
      // `LOCK TABLE`, a migration) they would wait until the statement timeout, and a load
      // balancer's probe with them. Each gets the ping's deadline; what did not answer is
      // reported as such.
      const deadlineMs = deps.readiness?.databaseTimeoutMs ?? 3000;
      // How long the job due soonest has waited past its due time: a verifier that stopped or
      // cannot keep up. Not the age of the oldest open job: an import of last week's receipts
      // is old data for the verifier to work through, no reason to take the proxy out of a
      // load balancer.
      const dueAt = database.ok
        ? await withTimeout(ops.oldestDueAt(), deadlineMs).then(
            (value) => ({ value }),
            (error: unknown) => ({ error: causeOf(error) }),
          )
        : null;
      const lag = dueAt !== null && "value" in dueAt ? dueAt.value : null;
      const seconds = lag === null ? 0 : Math.max(0, Math.round((at - lag) / 1000));
      // Unknown while the database cannot be asked: a lag of 0 there would read as all well.
      const verificationLag =
        dueAt === null
          ? {
              ok: false,
              seconds: null,
              maxSeconds,
              detail: "unknown: the database does not answer",
            }
          : "error" in dueAt
            ? {
                ok: false,
                seconds: null,
                maxSeconds,
                detail: `unknown: jobs could not be read (${dueAt.error}); is a lock held on it?`,
              }
            : { ok: seconds <= maxSeconds, seconds, maxSeconds };
      const background = deps.readiness?.background?.();
      const ok = database.ok && rpc.ok && verificationLag.ok && (background?.ok ?? true);
      // Informational, so left out when they do not answer in time.
      const informational = <T>(read: Promise<T> | undefined) =>
        read === undefined ? undefined : withTimeout(read, deadlineMs).catch(() => undefined);
      const profile = database.ok ? await informational(deps.readiness?.profile?.()) : undefined;
      const quorum = database.ok ? deps.readiness?.rpcQuorum?.() : null;
      const disagreeing = quorum
        ? await informational(ops.countJobsWithVerdict("rpc_disagreement"))
        : undefined;
      const rpcQuorum =
        quorum && disagreeing !== undefined ? { ...quorum, jobsInDisagreement: disagreeing } : null;
      const body = {
        ok,
        checks: { database, rpc, verificationLag, ...(background ? { background } : {}) },
        ...(rpcQuorum ? { rpcQuorum } : {}),
        ...(profile
          ? { profile: profile as typeof profile & { treasury: Record<string, unknown> } }
          : {}),
      };
      return ok ? c.json(body, 200) : c.json(body, 503);
    })
    .openapi(metrics, async (c) => {
      const text = await deps.metrics.registry.metrics();
      return c.text(text, 200, { "content-type": deps.metrics.registry.contentType });
    });
}
