import { Cron } from "croner";
import { z } from "zod";
import { isBase58OfLength } from "./chain/base58.js";
import { withoutUrlSecrets } from "./chain/url-secrets.js";
import { DatabaseUrlError, parseDatabaseUrl, sslModes } from "./db/url.js";
import { isCronExpression } from "./nightly/cron-expression.js";
import { DEFAULT_READ_QUEUE } from "./read-gate.js";
import { keyFingerprint } from "./recorder/key-fingerprint.js";
import { profileRefusal } from "./verify/profiles.js";

/**
 * The one reader of process.env. Every key is documented with its default; a bad value stops
 * start-up with one error that lists every bad key at once.
 */

const csv = (value: string) =>
  value
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part.length > 0);

/**
 * The endpoint a URL reaches: a fragment (never sent), an empty query and a host's trailing dots
 * aside, so that `https://rpc.example/#a`, `https://rpc.example/?` and `https://rpc.example./`
 * are one URL listed twice (the dot only says the name is fully qualified).
 */
function endpointOf(text: string): string {
  const url = new URL(text);
  url.hash = "";
  url.hostname = hostOf(url);
  return url.href.replace(/\?$/, "");
}

const urlList = z
  .string()
  .transform(csv)
  .pipe(
    z
      .array(z.url({ protocol: /^https?$/ }))
      .min(1, "at least one URL")
      // Run even when an element failed (zod goes on to refinements): only URLs that parse are
      // compared, or `notaurl` would throw "Invalid URL" naming no setting.
      .refine(
        (urls) => {
          const parsed = urls.filter((u) => URL.canParse(u)).map(endpointOf);
          return new Set(parsed).size === parsed.length;
        },
        { message: "lists one URL twice" },
      ),
  );

/**
 * Why `urls` cannot carry a quorum of `k`, or null when they can. Each endpoint is one vote, so
 * two on one host (and port), however their keys or paths differ, are one provider voting twice:
 * with k above 1 a lying provider listed twice would agree with itself and outvote an honest one.
 */
export function quorumRefusal(urls: readonly string[], k: number): string | null {
  if (k <= 1) return null;
  const seen = new Set<string>();
  for (const url of urls) {
    const provider = providerOf(url);
    if (seen.has(provider)) {
      return `a quorum counts each URL as one provider: ${withoutUrlSecrets(url)} is on a host listed before it (two keys of one provider would vote twice); list each provider once`;
    }
    seen.add(provider);
  }
  return urls.length < k
    ? `a quorum of ${k} needs at least that many SOLANA_RPC_URLS (${urls.length} listed)`
    : null;
}

/** A URL's host name without its trailing dots (`node.example.com.` is `node.example.com`). */
function hostOf(url: URL): string {
  return url.hostname.replace(/\.+$/, "");
}

/** The host and port a URL reaches, a trailing dot and the names of this machine folded. */
function providerOf(text: string): string {
  const url = new URL(text);
  const host = hostOf(url);
  const port = url.port;
  const loopback = host === "localhost" || host === "[::1]" || /^127\./.test(host);
  return `${loopback ? "loopback" : host}:${port}`;
}

/**
 * A whole number written in decimal digits, from `min` to `max` (surrounding spaces aside).
 * `z.coerce.number()` read " " as 0, "1e3" as 1000 and "0x50" as 80: a PORT of " " listened
 * on a random port instead of stopping start-up.
 */
const wholeNumber = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, "must be a whole number in decimal digits")
    .transform(Number)
    // No int(): the digits are one already (its check of a number past 2^53 said it again).
    .pipe(z.number().min(min).max(max));

/**
 * The longest a timer waits, in ms (2^31 − 1, about 24.8 days): Node fires a longer one at
 * once, so a monthly interval set in ms ran every millisecond.
 */
const MAX_TIMER_MS = 2_147_483_647;

/** A duration in ms that sets a timer: a whole number from `min` up to `MAX_TIMER_MS`. */
const timerMs = (min: number) => wholeNumber(min, MAX_TIMER_MS);

const boolFlag = z
  .enum(["1", "0", "true", "false", "yes", "no"])
  .transform((v) => v === "1" || v === "true" || v === "yes");

export const configSchema = z.object({
  /**
   * The store: a SQLite file path (or `file:PATH`), or a `postgres://` /
   * `postgresql://` URL (`postgres://user:password@host:5432/db?sslmode=verify-full`). Any other
   * scheme is refused. Default `./data/decentral-audit.db`.
   */
  DATABASE_URL: z
    .string()
    .min(1)
    .default("./data/decentral-audit.db")
    .superRefine((url, ctx) => {
      try {
        parseDatabaseUrl(url);
      } catch (error) {
        if (!(error instanceof DatabaseUrlError)) throw error;
        ctx.addIssue({ code: "custom", message: error.message.replace(/^DATABASE_URL /, "") });
      }
    }),
  /** PostgreSQL only: connections each process keeps open. Default 10. */
  DATABASE_POOL_SIZE: wholeNumber(1, 1000).default(10),
  /**
   * PostgreSQL only: longest a statement may run before the server cancels it, in ms; 0 means
   * no limit. Default 30000.
   */
  DATABASE_STATEMENT_TIMEOUT_MS: timerMs(0).default(30_000),
  /**
   * PostgreSQL only: TLS mode, `disable`, `require` (encrypted, certificate not checked),
   * `verify-ca` (certificate checked against the CA) or `verify-full` (and the host name). A
   * `sslmode` in DATABASE_URL means the same and must agree. Default: `disable` on localhost,
   * `verify-full` for any other host.
   */
  DATABASE_SSLMODE: z.enum(sslModes).optional(),
  /**
   * PostgreSQL only: PEM file of the CA that signed the server's certificate (for a provider's
   * own CA); default the system's trusted CAs.
   */
  DATABASE_SSL_ROOT_CERT: z.string().min(1).optional(),
  /** Solana JSON-RPC endpoints, comma-separated, tried in order. Default: the public mainnet endpoint. */
  SOLANA_RPC_URLS: urlList.default(["https://api.mainnet-beta.solana.com"]),
  /** Requests per second allowed on each RPC endpoint. Default 8 (public endpoints allow ~10). */
  RPC_RATE_LIMIT: z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?$/, "must be a number in decimal digits, e.g. 8 or 0.5")
    .transform(Number)
    // At least one request in 1000 s: below about one in 25 days the wait between requests
    // outgrew a timer, which Node fires at once, so the pool woke every millisecond (a warning
    // each time) and never sent a request.
    .pipe(z.number().min(0.001))
    .default(8),
  /** Requests in flight at once on each RPC endpoint. Default 4. */
  RPC_CONCURRENCY: wholeNumber(1).default(4),
  /** Timeout of one RPC request in milliseconds. Default 15000. */
  RPC_TIMEOUT_MS: timerMs(1).default(15_000),
  /**
   * The longest the pool waits for an endpoint paused by its 429s (Retry-After) before the
   * request fails over or fails, in ms. Default 15000.
   */
  RPC_RATE_LIMIT_WAIT_MS: timerMs(0).default(15_000),
  /** Send JSON-RPC batch arrays (many providers refuse them). Default off. */
  RPC_BATCH: boolFlag.default(false),
  /**
   * Endpoints of `SOLANA_RPC_URLS` that must answer every fact a verdict uses identically (parsed
   * transaction facts, finalized statuses). 1 trusts one endpoint at a time (failover). Each
   * extra endpoint costs one getTransaction per signature. At most the number of URLs. Default 1.
   */
  RPC_QUORUM: wholeNumber(1, 16).default(1),
  /** Signatures per getSignatureStatuses call, 1..256. Default 256. */
  RPC_STATUS_BATCH_SIZE: wholeNumber(1, 256).default(256),
  /** Upstream Decentral API that the recording proxy forwards to. */
  DECENTRAL_BASE_URL: z
    .url({
      protocol: /^https?$/,
      // zod says "Invalid URL" for a URL of another scheme (ftp://x), which is one.
      error: (issue) =>
        typeof issue.input === "string" && URL.canParse(issue.input)
          ? `must be an http:// or https:// URL, not ${new URL(issue.input).protocol}`
          : "must be an http:// or https:// URL",
    })
    // The proxy and the jobs API take only its path (a query, a fragment or a user:password
    // went nowhere), while the account snapshot's fetch put `/account` after the query, or
    // threw on the password: refused, as neither is a base to put a path under.
    .refine((text) => {
      const url = URL.canParse(text) ? new URL(text) : null;
      return url === null || (url.username === "" && url.password === "");
    }, "holds a user or password: Decentral is authenticated by the caller's key, not the URL")
    .refine(
      (text) => !URL.canParse(text) || !/[?#]/.test(text),
      "holds a query or fragment: give the API root alone, e.g. https://api.usedecentral.org/v1",
    )
    .default("https://api.usedecentral.org/v1"),
  /** Decentral API key for the background settlement backfill (jobs API). Optional. */
  DECENTRAL_API_KEY: z
    .string()
    .regex(/^dcntrl_(live|test)_[A-Za-z0-9]{32}$/, "must look like dcntrl_live_<32 alphanumerics>")
    .optional(),
  /**
   * Credit vaults of this deployment, comma-separated: a bare address lists a vault of any of
   * its keys; `<key fingerprint>:<address>` pins one key's vault (fingerprints as reports show
   * them). A lock from any other vault is a discrepancy. Default none: each key's vault is
   * learned from its first lock.
   */
  CREDIT_VAULTS: z
    .string()
    .default("")
    .transform((text, ctx) => {
      const vaults: string[] = [];
      const byKey: Record<string, string> = {};
      for (const raw of text.split(",")) {
        const entry = raw.trim();
        if (entry === "") continue;
        const [first, second] = entry.split(":");
        const address = second ?? first!;
        // An address is 32 bytes of base58: one of 43 characters of `1` is 43 bytes, a vault no
        // lock can come from, and every lock of the deployment was judged from another vault.
        if (!isBase58OfLength(address, 32) || entry.split(":").length > 2) {
          ctx.addIssue({
            code: "custom",
            message: `${JSON.stringify(entry)} is not <address> or <fingerprint>:<address> (an address is base58 of 32 bytes)`,
          });
          continue;
        }
        if (second === undefined) {
          // Listed twice, one vault read as two: a key's snapshot found no single vault to use.
          if (vaults.includes(address)) {
            ctx.addIssue({ code: "custom", message: `lists ${address} twice` });
          } else vaults.push(address);
        } else if (!/^[0-9a-f]{16}$/.test(first!)) {
          ctx.addIssue({
            code: "custom",
            message: `${JSON.stringify(first)} is not a 16-hex-digit key fingerprint`,
          });
        } else if (Object.hasOwn(byKey, first!)) {
          // Pinned twice, the last pin won without a word: the other vault's locks then read
          // as a discrepancy of a vault not the key's.
          ctx.addIssue({ code: "custom", message: `pins key ${first} twice; pin each key once` });
        } else byKey[first!] = address;
      }
      return { vaults, byKey };
    }),
  /**
   * Decentral API keys of the callers, comma-separated, for the settlement backfill: each job
   * is asked about with the key it was made with (matched by fingerprint), since the jobs API
   * shows a job only to its own key. Held in memory only, never logged or stored. Optional.
   */
  DECENTRAL_API_KEYS: z
    .string()
    .transform(csv)
    .pipe(
      z
        .array(
          z
            .string()
            .regex(
              /^dcntrl_(live|test)_[A-Za-z0-9]{32}$/,
              "each must look like dcntrl_live_<32 alphanumerics>",
            ),
        )
        .min(1, "at least one key")
        // Two keys with one fingerprint are one key to the backfill, which picks a job's key by
        // fingerprint: whoever minted them made them collide (see key-fingerprint.ts).
        .refine(
          (keys) => new Set(keys.map((k) => keyFingerprint(k))).size === new Set(keys).size,
          "two of the keys share one key fingerprint: the audit cannot tell their jobs apart",
        ),
    )
    .optional(),
  /** HTTP port of `serve`. Default 8787; 0 picks a free port. */
  PORT: wholeNumber(0, 65_535).default(8787),
  /**
   * Processes of `serve` sharing its port (node:cluster): every one proxies and ingests, one
   * (the holder of the store's leader lock) runs the verifier and the backfill. Default: one
   * per core, at most 16; 1 runs a single process.
   */
  WORKERS: wholeNumber(1, 64).optional(),
  /**
   * How long `serve`, told to stop (SIGTERM), lets responses in flight run before it cuts their
   * connections (each cut response is still recorded, as aborted), in ms. Default 30000.
   */
  DRAIN_TIMEOUT_MS: wholeNumber(0, 3_600_000).default(30_000),
  /**
   * How long `serve --workers` waits for its workers to drain beyond `DRAIN_TIMEOUT_MS` (cut-off
   * responses recorded, the writer and the lease closed) before killing them, and a single
   * `serve` process for its own drain before it kills itself, in ms. Default 10000.
   */
  DRAIN_MARGIN_MS: wholeNumber(0, 3_600_000).default(10_000),
  /**
   * How long `serve --workers` waits before it starts a dead worker again, in ms, doubled while
   * that worker's place keeps dying (up to 30 s, or this wait if longer). Default 1000.
   */
  WORKER_RESTART_MS: wholeNumber(1, 3_600_000).default(1000),
  /**
   * How often a `serve --workers` worker sends its counters and histograms to the primary (when
   * they changed), in ms: a worker that dies loses at most this long of its counts. Default 1000.
   */
  WORKER_COUNTERS_MS: wholeNumber(1, 3_600_000).default(1000),
  /**
   * Report readers (audit records, reports, job listings, dashboard pages) a serving process
   * lets wait for their turn; one more is answered 503 with `Retry-After`. Readers take turns,
   * one at a time on SQLite, so that a burst of them never holds the event loop. Default 64.
   */
  READ_QUEUE: wholeNumber(0, 100_000).default(DEFAULT_READ_QUEUE),
  /** Interface `serve` listens on. Default 127.0.0.1. */
  // Whitespace around it (a CRLF .env line's `\r`) names no interface: serve said only
  // `cannot listen on  :8787: getaddrinfo ENOTFOUND`.
  HOST: z
    .string()
    .min(1)
    .refine((host) => host.trim() === host, "has whitespace around it, which names no interface")
    .default("127.0.0.1"),
  /** Protocol profile: a built-in name (`localnet`, `decentral-mainnet`) or a JSON file path. */
  AUDIT_PROFILE: z.string().min(1).default("decentral-mainnet"),
  /** Also require an access token of role `ingest` on the proxy path /v1/*. Default off. */
  PROXY_REQUIRE_TOKEN: boolFlag.default(false),
  /**
   * SQLite file: `serve` commits receipts in a thread of its own, so that no group commit holds
   * the event loop that proxies (see src/recorder/threaded-receipt-writer.ts). Each receipt
   * then waits for a message's round trip between threads as well. Default off.
   */
  RECEIPT_WRITER_THREAD: boolFlag.default(false),
  /**
   * How often the verifier polls signatures that are not finalized yet, in ms. Finality moves a
   * slot (~400 ms) at a time and takes ~13 s, so faster polling only spends requests. Default 2000.
   */
  VERIFY_POLL_MS: timerMs(1).default(2000),
  /**
   * How long after its first miss a signature past its drop window waits while an endpoint
   * cannot be asked, alone shows it with nothing its fee payer signed, or has not moved its
   * finalized slot: then the other endpoints' "not found" drops it, in ms. Default 300000.
   */
  VERIFY_DROP_HOLD_MS: timerMs(0).default(300_000),
  /**
   * How long `verify` may go on past its `--timeout` to write its run row's outcome while the
   * database is busy (another process holding the write lock) or restarting, in ms. Default 15000.
   */
  VERIFY_CLOSE_GRACE_MS: timerMs(0).default(15_000),
  /**
   * How long after its recording `serve` holds a job's clean verdict for the jobs API's answer
   * (it may name a second settlement), while the settlement backfill asks about it; a job the
   * proxy asks about itself waits at most 45 s of it. 0 gives verdicts without waiting.
   * Default 60000.
   */
  JOBS_API_WAIT_MS: timerMs(0).default(60_000),
  /**
   * How often `serve` reads new history of every credit vault (the ledger), and scans the escrow
   * vault's (src/ledger/escrow-scan.ts), in ms; 0 turns both loops off. Default 10000. While a
   * verdict waits for the scan to read past its job (src/verify/escrow-cover.ts), the scan runs
   * every second; with 0, verdicts do not wait for it.
   */
  LEDGER_POLL_MS: timerMs(0).default(10_000),
  /**
   * Seconds after the profile's settlement window before a lock that nothing returned or
   * settled is a finding (`unreleased_lock`). Default 300.
   */
  // At most a year: a grace near 2^53 s put a lock's due time past the last instant a Date
  // holds, and every statement (CLI, API, dashboard, nightly) failed "Invalid time value".
  LEDGER_GRACE_SECONDS: wholeNumber(0, 31_536_000).default(300),
  /**
   * How often `serve` asks Decentral's `GET /v1/account` (with `DECENTRAL_API_KEY`) and compares
   * it with the key's credit vault on chain, in ms; 0 turns it off, and so does having no key.
   * Default 3600000 (hourly).
   */
  ACCOUNT_SNAPSHOT_INTERVAL_MS: timerMs(0).default(3_600_000),
  /** Cron expression for in-process nightly verification in `serve` (UTC). Default none. */
  VERIFY_CRON: z
    .string()
    .min(1)
    // Checked with every other key: checked later, as serve started, a bad expression stopped it
    // alone, and the other bad keys came one run at a time.
    .refine(isCronExpression, "not a cron expression (five or six fields, UTC)")
    // `0 2 31 2 *` (31 February) parses and never fires: serve started and said it scheduled
    // the nightly verification, which never ran.
    .refine(
      (expression) => !isCronExpression(expression) || cronFires(expression),
      "never fires (no such day, as 31 February): the nightly verification would never run",
    )
    .optional(),
  /** pino log level. Default info. */
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

/** Whether the expression has a next fire time (croner looks years ahead for one). */
function cronFires(expression: string): boolean {
  const cron = new Cron(expression, { timezone: "UTC", paused: true });
  try {
    return cron.nextRun() !== null;
  } finally {
    cron.stop();
  }
}

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = Partial<Record<keyof Config, string | undefined>>;

/** Thrown when the environment or flags hold bad values; `issues` names every bad key. */
export class ConfigError extends Error {
  constructor(readonly issues: { key: string; message: string }[]) {
    super(`invalid configuration:\n${issues.map((i) => `  ${i.key}: ${i.message}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/**
 * Reads the configuration from the environment, with CLI flags (already mapped to env key names)
 * taking precedence. Empty strings count as unset.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv | ConfigInput = process.env,
  overrides: ConfigInput = {},
): Config {
  const input: Record<string, string> = {};
  for (const key of Object.keys(configSchema.shape) as (keyof Config)[]) {
    const value = overrides[key] ?? env[key];
    if (value !== undefined && value !== "") input[key] = value;
  }
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    throw withProfileIssue(
      input.AUDIT_PROFILE,
      parsed.error.issues.map((issue) => ({
        key: String(issue.path[0] ?? "(config)"),
        message: issue.message,
      })),
    );
  }
  const refusal = quorumRefusal(parsed.data.SOLANA_RPC_URLS, parsed.data.RPC_QUORUM);
  if (refusal !== null) {
    throw withProfileIssue(input.AUDIT_PROFILE, [{ key: "RPC_QUORUM", message: refusal }]);
  }
  return parsed.data;
}

/**
 * The error naming `issues`, and first a refused profile beside them. The profile is read only
 * here, when the configuration is refused anyway (a good one is read by the command that judges
 * with it): `AUDIT_PROFILE=x PORT=abc` named PORT alone, and the profile, which changes what
 * other settings mean, only in the next run.
 */
function withProfileIssue(
  profile: string | undefined,
  issues: { key: string; message: string }[],
): ConfigError {
  const refusal = profile === undefined ? null : profileRefusal(profile);
  return new ConfigError(
    refusal === null ? issues : [{ key: "AUDIT_PROFILE", message: refusal }, ...issues],
  );
}
