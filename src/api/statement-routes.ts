import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { isBase58OfLength } from "../chain/base58.js";
import type { Store } from "../db/client.js";
import { AppError } from "../errors.js";
import { accountSnapshotToJson } from "../ledger/account-snapshots.js";
import { buildStatement, statementToCsv, statementToJson } from "../ledger/statement.js";
import { type AccountSnapshot, createAccountSnapshotsStore } from "../store/account-snapshots.js";
import type { Profile } from "../verify/profiles.js";
import type { AppEnv } from "./context.js";
import {
  authErrors,
  ErrorSchema,
  noQueryParameters,
  notAcceptableError,
  nullableRef,
  periodBounds,
  queryObject,
  wholeNumberQuery,
} from "./openapi-schemas.js";
import { answersOnly, csvAnswer, reportQuery, wantsCsv, withCsvAnswer } from "./report-query.js";
import { createRouter } from "./router.js";

export interface StatementRoutesDeps {
  store: Store;
  profile: Profile;
  /** Seconds after the settlement window before an unreturned lock is a finding. */
  graceSeconds: number;
  now: () => number;
  /**
   * Takes a `GET /v1/account` snapshot now (`DECENTRAL_API_KEY` set); without it
   * `POST /reports/account-snapshots` answers 409.
   */
  takeAccountSnapshot?: () => Promise<AccountSnapshot>;
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
  jobId: z
    .string()
    .nullable()
    .describe(
      "The job the memo names once it holds this transaction among its steps (conflicting receipts included) and has a final verdict; else null.",
    ),
});

const AccountSnapshotSchema = z
  .object({
    id: z.number().int(),
    takenAt: z.string(),
    keyFingerprint: z.string(),
    vault: z.string().nullable().describe("The key's credit vault; null when not known yet."),
    creditsRemaining: z.number().int().nullable().describe("`credits_remaining` as answered."),
    usdcValueUnits: units.nullable().describe("`usdc_value` as answered, in base units."),
    vaultUnits: units.nullable().describe("The vault's balance on chain at that moment."),
    vaultSlot: z.number().int().nullable(),
    creditsDifference: z
      .number()
      .int()
      .nullable()
      .describe("credits_remaining - the vault's balance in whole credits: 0."),
    usdcDifferenceUnits: units.nullable().describe("usdc_value - the vault's balance: 0."),
    error: z.string().nullable().describe("Why nothing was compared, if so."),
  })
  .openapi("AccountSnapshot");

const StatementSchema = z
  .object({
    ...periodBounds,
    generatedAt: z.string(),
    vaults: z.array(
      z.object({
        vault: z.string(),
        keys: z.array(z.string()).describe("Fingerprints of the API keys pinned to the vault."),
        readThrough: z
          .string()
          .nullable()
          .describe(
            "The history holds every transaction before this time: the block time of the chain's finalized slot when the vault was last listed.",
          ),
        complete: z
          .boolean()
          .describe(
            "The history is read through `to` (`readThrough` is at or past it), every transaction listed up to `to` is read, no gap is open in the period, the period does not reach back before the history the RPC has (`missingHistory`), and no lock of the period is still out before its due time (`locksNotDue`): the statement's findings will not change.",
          ),
        missingHistory: z
          .object({
            beforeSignature: z.string(),
            slot: z.number().int(),
            blockTime: z.string().nullable(),
          })
          .nullable()
          .describe(
            "The oldest transaction the RPC lists for the vault, when it is not the one that created the vault's account and the period reaches back to it: what moved before it is not available (pruned), and the period is not complete.",
          ),
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
        differenceUnits: units
          .nullable()
          .describe(
            "Closing on chain - closing by ledger: 0. Null when either is not known: `closingOnChainUnits` is null while a transaction listed up to `to` is not read (`unread`). Also null when the ledger wrote the vault during each read of its statement (`complete` is false then).",
          ),
        unread: z
          .object({
            lines: z.number().int(),
            why: z.string().nullable(),
          })
          .nullable()
          .describe(
            "Transactions listed up to `to` (or of unknown time) and not read: the RPC has not served them, or they hold an amount beyond 2^53 - 1 base units, what the store holds (a balance above it leaves every later line unread). `why` is the ledger's last error on the vault, null when none was recorded. Null when every transaction up to `to` is read.",
          ),
        counts: z.object({
          lines: z.number().int(),
          deposits: z.number().int(),
          locks: z.number().int(),
          returns: z.number().int(),
          unexplained: z.number().int(),
          unreleasedLocks: z.number().int(),
          locksNotDue: z.number().int(),
          creditsHeaderMismatches: z.number().int(),
          creditsHeaderUndecided: z.number().int(),
          foreignMint: z.number().int(),
          ownerChanges: z.number().int(),
          delegateApprovals: z.number().int(),
          mixedMemos: z.number().int(),
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
            outstandingUnits: units.describe(
              "What of the lock its returns and settlement do not account for",
            ),
            lockedAt: z.string().nullable(),
            dueBy: z.string().nullable(),
          }),
        ),
        locksNotDue: z
          .array(
            z.object({
              finding: z.literal("lock_not_due"),
              jobId: z.string(),
              signature: z.string(),
              lockUnits: units,
              outstandingUnits: units.describe("What of the lock nothing accounts for yet"),
              lockedAt: z.string().nullable(),
              dueBy: z.string().nullable(),
            }),
          )
          .describe(
            "Locks of the period still out whose due time (`dueBy`) the history read has not passed: not findings yet, but the period is not `complete` until each is released or, once due, an `unreleasedLocks` entry.",
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
            "Jobs whose x-decentral-credits-remaining matches no balance of the vault between their lock and their response, that span read in full.",
          ),
        creditsHeaderUndecided: z
          .array(
            z.object({
              finding: z.literal("credits_header_undecided"),
              jobId: z.string(),
              headerUnits: units,
              balancesUnits: z.array(units),
            }),
          )
          .describe(
            "Jobs whose x-decentral-credits-remaining matches no balance of the vault read so far between their lock and their response, that span not read in full yet (the chain not finalized past the response, a line or the named settlement not read): no mismatch yet; the next read of the vault decides it. `balancesUnits` are the balances read so far.",
          ),
        foreignMint: z
          .array(
            z.union([
              z.object({
                finding: z.literal("foreign_mint_movement"),
                signature: z.string(),
                slot: z.number().int(),
                blockTime: z.string().nullable(),
                memo: z.string().nullable(),
                memoJobId: z.string().nullable(),
                changes: z.array(
                  z.object({
                    mint: z.string(),
                    programId: z.string().nullable(),
                    amountUnits: units.describe("In that mint's base units, never credits"),
                  }),
                ),
              }),
              z.object({
                finding: z.literal("foreign_mint_balance"),
                mint: z.string().nullable(),
                programId: z.string(),
                amountUnits: units.nullable(),
                slot: z.number().int().nullable(),
              }),
            ]),
          )
          .describe(
            "The vault's address moved or holds a mint other than the credits' (closed and opened again): never counted as money.",
          ),
        ownerChanges: z
          .array(
            z.object({
              finding: z.enum(["vault_owner_changed", "vault_owner_now"]),
              signature: z.string(),
              slot: z.number().int(),
              blockTime: z.string().nullable(),
              owner: z.string().describe("The vault's owner after the transaction"),
              memo: z.string().nullable(),
              memoJobId: z.string().nullable(),
            }),
          )
          .describe(
            "Transactions after which the vault's owner was not the escrow authority that owns every credit vault (a SetAuthority, moving nothing, and every transaction after it): that owner can spend the vault's money alone. A `vault_owner_now` (said by every statement, whatever its period) names the vault's newest read transaction that shows its owner (a SOL transfer to the vault shows none) when it left the vault another's.",
          ),
        delegateApprovals: z
          .array(
            z.object({
              finding: z.literal("vault_delegate_approved"),
              signature: z.string(),
              slot: z.number().int(),
              blockTime: z.string().nullable(),
              delegate: z
                .string()
                .describe(
                  "The delegate given: the instruction's accounts other than the vault, its owner and the credit mint (space-separated when more), or `<kind>(<accounts>)` when none is left",
                ),
              approvedUnits: units
                .nullable()
                .describe(
                  "What the transaction's last Approve of the vault let the delegate spend; null when the stored transaction does not tell",
                ),
              memo: z.string().nullable(),
              memoJobId: z.string().nullable(),
            }),
          )
          .describe(
            "Transactions whose Approve or ApproveChecked named the vault, moving nothing: the delegate can spend the vault's money alone until revoked.",
          ),
        ownerRead: z
          .object({
            finding: z.literal("vault_owner_read"),
            owner: z
              .string()
              .nullable()
              .describe("The owner the read found; null: the answer named none"),
            slot: z.number().int().describe("The balance read's slot"),
            readAt: z
              .string()
              .nullable()
              .describe("When the read was made; null for a read kept before its time was"),
          })
          .nullable()
          .describe(
            "The vault's last balance read (getAccountInfo) found it owned by another than the escrow authority, or naming no owner: that owner can spend it alone. Said by every statement while the read says so, unless `vault_owner_now` names the same owner; no line may show it (a node leaving owners out of token balances).",
          ),
        delegateRead: z
          .object({
            finding: z.literal("vault_delegate_read"),
            delegate: z.string(),
            delegatedUnits: units.describe("What the delegate may still spend"),
            slot: z.number().int().describe("The balance read's slot"),
            readAt: z
              .string()
              .nullable()
              .describe("When the read was made; null for a read kept before its time was"),
          })
          .nullable()
          .describe(
            "The vault's last balance read found a delegate that may still spend some of it alone. Said by every statement while the read says so, unless an Approve of the period names the same delegate; no line may show it (an Approve inside a call served with `[]` inner instructions).",
          ),
        mixedMemos: z
          .array(
            z.object({
              finding: z.literal("mixed_job_memos"),
              signature: z.string(),
              slot: z.number().int(),
              blockTime: z.string().nullable(),
              amountUnits: units.describe("Change of the vault's balance: negative out"),
              memo: z.string().nullable(),
              named: z
                .array(
                  z.object({ kind: z.enum(["escrow", "settle", "refund"]), jobId: z.string() }),
                )
                .describe("Every step and job the memos name, first memo first"),
              kind: z.enum(["lock", "return", "deposit", "unexplained", "none"]).nullable(),
              jobId: z
                .string()
                .nullable()
                .describe("The recorded job the line was filed under, if any"),
            }),
          )
          .describe(
            "Transactions that moved the vault's money under memos naming several jobs, or several steps of one job: nobody can say whose money it was. The line is filed under the first job it can be a lock or return of, and judged with each job it names.",
          ),
        setAside: z
          .array(
            z.object({
              signature: z.string(),
              slot: z.number().int(),
              blockTime: z.string().nullable(),
              why: z.string(),
            }),
          )
          .describe(
            "Entries a node listed as the vault's whose transactions' own signatures prove they name no account of it: set aside (read as moving nothing), each with why.",
          ),
        gaps: z
          .array(
            z.object({
              afterSignature: z
                .string()
                .nullable()
                .describe(
                  "The movement before the gap; null when no movement of the vault is listed (fromSlot 0) yet the balance read holds credits.",
                ),
              beforeSignature: z
                .string()
                .nullable()
                .describe(
                  "The movement after the gap; null when it ends at the vault's balance read (at toSlot), which the newest movement read does not chain to.",
                ),
              fromSlot: z.number().int(),
              toSlot: z.number().int(),
              missingUnits: units,
            }),
          )
          .describe(
            "Consecutive movements whose balances do not chain: history missing between them (a pruned node?), never fraud by itself.",
          ),
        accountSnapshot: nullableRef(AccountSnapshotSchema).describe(
          "The newest GET /v1/account snapshot of the vault taken in the period, against the chain.",
        ),
      }),
    ),
  })
  .openapi("Statement");

const statementQuery = reportQuery({
  vault: z
    .string()
    .refine((value) => isBase58OfLength(value, 32), "not an address: base58 of 32 bytes")
    .optional()
    .openapi({
      param: { name: "vault", in: "query" },
      description: "Only this credit vault.",
    }),
});

const snapshotsQuery = queryObject({
  vault: z
    .string()
    .refine((value) => isBase58OfLength(value, 32), "not an address: base58 of 32 bytes")
    .optional()
    .openapi({ param: { name: "vault", in: "query" }, description: "Only this credit vault." }),
  limit: wholeNumberQuery(1, 1000)
    .optional()
    .openapi({ param: { name: "limit", in: "query" }, description: "At most this many; 100." }),
});

/**
 * `GET /reports/statement`: the credit vaults' statement for a period (role read);
 * `GET /reports/account-snapshots` (read) lists the `/v1/account` snapshots, newest first, and
 * `POST /reports/account-snapshots` (admin) takes one now.
 */
export function statementRoutes(deps: StatementRoutesDeps) {
  const snapshots = createAccountSnapshotsStore(deps.store);
  const listSnapshots = createRoute({
    method: "get",
    path: "/reports/account-snapshots",
    tags: ["reports"],
    middleware: answersOnly(["application/json"]),
    summary: "Every GET /v1/account snapshot against the credit vault's balance, newest first",
    request: { query: snapshotsQuery },
    responses: {
      200: {
        content: {
          "application/json": {
            schema: z.object({ snapshots: z.array(AccountSnapshotSchema) }),
          },
        },
        description: "The snapshots kept.",
      },
      ...authErrors,
      ...notAcceptableError,
    },
  });
  const takeSnapshot = createRoute({
    method: "post",
    path: "/reports/account-snapshots",
    tags: ["reports"],
    summary: "Asks GET /v1/account now and compares it with the credit vault on chain",
    // `?vault=X` ignored took a snapshot of the key's own vault as if of the one asked for.
    middleware: noQueryParameters,
    responses: {
      201: {
        content: { "application/json": { schema: AccountSnapshotSchema } },
        description: "The snapshot taken (with `error` when the API or the chain did not answer).",
      },
      409: {
        content: {
          "application/json": { schema: ErrorSchema },
        },
        description: "No DECENTRAL_API_KEY: this service cannot ask the account.",
      },
      ...authErrors,
    },
  });
  const route = withCsvAnswer(
    createRoute({
      method: "get",
      path: "/reports/statement",
      tags: ["reports"],
      middleware: answersOnly(["application/json", "text/csv"]),
      summary: "Each credit vault's statement: every movement explained, closing on the chain",
      request: { query: statementQuery },
      responses: {
        200: {
          content: { "application/json": { schema: StatementSchema } },
          description: "The statement of every credit vault the ledger reads (or of `vault`).",
        },
        ...authErrors,
        ...notAcceptableError,
      },
    }),
    "One `vault` row per vault with its figures, then one row per finding (`unreceipted_debit`, `unreleased_lock`, `lock_not_due` and the others the JSON lists; a lock's row has the whole lock in `amountUnits` and `outstandingUnits=<n>; dueBy=<ISO 8601>` in `memo`); every row ends with the statement's `from` (inclusive), `to` (exclusive) and `generatedAt` (ISO 8601 UTC, as in the JSON).",
  );
  const readers = createRouter({ store: deps.store, role: "read" })
    .openapi(listSnapshots, async (c) => {
      const q = c.req.valid("query");
      const list = await snapshots.list({
        ...(q.vault ? { vault: q.vault } : {}),
        ...(q.limit ? { limit: q.limit } : {}),
      });
      return c.json({ snapshots: list.map(accountSnapshotToJson) }, 200);
    })
    .openapi(route, async (c) => {
      const q = c.req.valid("query");
      const statement = await buildStatement(
        deps.store,
        { from: q.from, to: q.to, ...(q.vault ? { vault: q.vault } : {}) },
        { profile: deps.profile, graceSeconds: deps.graceSeconds, now: deps.now },
      );
      if (wantsCsv(c, q.format)) {
        return csvAnswer(c, statementToCsv(statement), "statement.csv");
      }
      return c.json(statementToJson(statement), 200);
    });
  const admins = createRouter({ store: deps.store, role: "admin" }).openapi(
    takeSnapshot,
    async (c) => {
      if (!deps.takeAccountSnapshot) {
        throw new AppError("conflict", "no DECENTRAL_API_KEY: the account cannot be asked");
      }
      return c.json(accountSnapshotToJson(await deps.takeAccountSnapshot()), 201);
    },
  );
  return new OpenAPIHono<AppEnv>().route("/", readers).route("/", admins);
}
