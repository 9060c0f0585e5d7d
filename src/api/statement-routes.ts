import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Store } from "../db/client.js";
import { buildStatement, statementToCsv, statementToJson } from "../ledger/statement.js";
import type { Profile } from "../verify/profiles.js";
import { BEARER_SCHEME, requireRole } from "./auth.js";
import type { AppEnv } from "./context.js";
import { authErrors, instantParam, periodBounds, periodRefinement } from "./openapi-schemas.js";

export interface StatementRoutesDeps {
  store: Store;
  profile: Profile;
  /** Seconds after the settlement window before an unreturned lock is a finding. */
  graceSeconds: number;
  now: () => number;
}

const units = z.string().describe("Base units as a decimal string.");

const LineSchema = z.object({
  finding: z.literal("unreceipted_debit"),
  signature: z.string(),
  slot: z.number().int(),
  blockTime: z.string().nullable(),
  amountUnits: units,
  memo: z.string().nullable(),
  memoJobId: z.string().nullable().describe("The job the memo names, recorded or not."),
});

const StatementSchema = z
  .object({
    ...periodBounds,
    generatedAt: z.string(),
    vaults: z.array(
      z.object({
        vault: z.string(),
        keys: z.array(z.string()).describe("Fingerprints of the API keys pinned to the vault."),
        readThrough: z.string().nullable(),
        complete: z
          .boolean()
          .describe("The history is read past `to` and every listed transaction is read."),
        openingUnits: units.nullable(),
        depositsUnits: units,
        locksUnits: units,
        returnsUnits: units,
        unexplainedOutUnits: units,
        netSpendUnits: units,
        closingByLedgerUnits: units.nullable(),
        closingOnChainUnits: units.nullable(),
        closingOnChainSource: z
          .enum(["next_transaction", "balance_read", "last_transaction"])
          .nullable(),
        differenceUnits: units.nullable().describe("Closing on chain - closing by ledger: 0."),
        counts: z.object({
          lines: z.number().int(),
          deposits: z.number().int(),
          locks: z.number().int(),
          returns: z.number().int(),
          unexplained: z.number().int(),
          unreleasedLocks: z.number().int(),
          creditsHeaderMismatches: z.number().int(),
          pending: z.number().int(),
          noMovement: z.number().int(),
        }),
        unexplained: z.array(LineSchema),
        unreleasedLocks: z.array(
          z.object({
            finding: z.literal("unreleased_lock"),
            jobId: z.string(),
            signature: z.string(),
            lockUnits: units,
            lockedAt: z.string().nullable(),
            dueBy: z.string().nullable(),
          }),
        ),
        creditsHeaderMismatches: z
          .array(
            z.object({
              finding: z.literal("credits_header_mismatch"),
              jobId: z.string(),
              headerUnits: units,
              balancesUnits: z.array(units),
            }),
          )
          .describe(
            "Jobs whose x-decentral-credits-remaining matches no balance of the vault between their lock and their response.",
          ),
        gaps: z
          .array(
            z.object({
              afterSignature: z.string(),
              beforeSignature: z.string(),
              fromSlot: z.number().int(),
              toSlot: z.number().int(),
              missingUnits: units,
            }),
          )
          .describe(
            "Consecutive movements whose balances do not chain: history missing between them (a pruned node?), never fraud by itself.",
          ),
      }),
    ),
  })
  .openapi("Statement");

const statementQuery = z
  .object({
    from: instantParam("from", "Start of the period, inclusive."),
    to: instantParam("to", "End of the period, exclusive."),
    vault: z
      .string()
      .regex(/^[1-9A-HJ-NP-Za-km-z]{32,44}$/, "a base58 address")
      .optional()
      .openapi({
        param: { name: "vault", in: "query" },
        description: "Only this credit vault.",
      }),
    format: z
      .enum(["json", "csv"])
      .optional()
      .openapi({
        param: { name: "format", in: "query" },
        description: "`csv` for RFC 4180 CSV; `Accept: text/csv` does the same.",
      }),
  })
  .superRefine(periodRefinement);

/** `GET /reports/statement`: the credit vaults' statement for a period (role read). */
export function statementRoutes(deps: StatementRoutesDeps) {
  const route = createRoute({
    method: "get",
    path: "/reports/statement",
    tags: ["reports"],
    summary: "Each credit vault's statement: every movement explained, closing on the chain",
    security: [{ [BEARER_SCHEME]: [] }],
    middleware: [requireRole(deps.store, "read")] as const,
    request: { query: statementQuery },
    responses: {
      200: {
        content: {
          "application/json": { schema: StatementSchema },
          "text/csv": {
            schema: z.string().openapi({
              description:
                "One `vault` row per vault with its figures, then one row per finding (`unreceipted_debit`, `unreleased_lock`).",
            }),
          },
        },
        description: "The statement of every credit vault the ledger reads (or of `vault`).",
      },
      ...authErrors,
    },
  });
  return new OpenAPIHono<AppEnv>().openapi(route, async (c) => {
    const q = c.req.valid("query");
    const statement = await buildStatement(
      deps.store,
      { from: q.from, to: q.to, ...(q.vault ? { vault: q.vault } : {}) },
      { profile: deps.profile, graceSeconds: deps.graceSeconds, now: deps.now },
    );
    const wantsCsv =
      q.format === "csv" ||
      (q.format === undefined && (c.req.header("accept") ?? "").includes("text/csv"));
    if (wantsCsv) {
      return c.body(statementToCsv(statement), 200, {
        "content-type": "text/csv; charset=utf-8; header=present",
        "content-disposition": 'attachment; filename="statement.csv"',
      });
    }
    return c.json(statementToJson(statement), 200);
  });
}
