import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";
import { nightlyVerifierOptions } from "../src/nightly/verify-run.js";

describe("config", () => {
  it("applies the documented defaults when nothing is set", () => {
    const config = loadConfig({});
    expect(config.DATABASE_URL).toBe("./data/decentral-audit.db");
    expect(config.PORT).toBe(8787);
    expect(config.DECENTRAL_BASE_URL).toBe("https://api.usedecentral.org/v1");
    expect(config.SOLANA_RPC_URLS).toEqual(["https://api.mainnet-beta.solana.com"]);
  });

  it("lets flags override the environment", () => {
    const config = loadConfig({ PORT: "9000" }, { PORT: "9100" });
    expect(config.PORT).toBe(9100);
  });

  it("refuses an RPC_QUORUM larger than the number of SOLANA_RPC_URLS", () => {
    expect(loadConfig({}).RPC_QUORUM).toBe(1);
    expect(
      loadConfig({ SOLANA_RPC_URLS: "http://a,http://b,http://c", RPC_QUORUM: "2" }).RPC_QUORUM,
    ).toBe(2);
    expect(() => loadConfig({ SOLANA_RPC_URLS: "http://a", RPC_QUORUM: "2" })).toThrow(
      /RPC_QUORUM: a quorum of 2 needs at least that many SOLANA_RPC_URLS \(1 listed\)/,
    );
  });

  it("counts one provider once in a quorum, and refuses a URL listed twice", () => {
    // One node listed twice would be a quorum of one node agreeing with itself.
    expect(() =>
      loadConfig({ SOLANA_RPC_URLS: "http://a:8899,http://a:8899/", RPC_QUORUM: "2" }),
    ).toThrow(/SOLANA_RPC_URLS: lists one URL twice/);
    expect(() => loadConfig({ SOLANA_RPC_URLS: "http://a:8899,http://a:8899" })).toThrow(
      /SOLANA_RPC_URLS: lists one URL twice/,
    );
    // Two keys of one provider are one provider: with an honest third, the two would outvote it.
    const twoKeys = "https://rpc.example/?api-key=1,https://rpc.example/?api-key=2";
    for (const urls of [
      twoKeys,
      `${twoKeys},https://honest.example/`,
      "https://rpc.example.com/a,https://rpc.example.com./b",
      "http://127.0.0.1:8899,http://localhost:8899",
    ]) {
      expect(() => loadConfig({ SOLANA_RPC_URLS: urls, RPC_QUORUM: "2" }), urls).toThrow(
        /RPC_QUORUM: a quorum counts each URL as one provider: https?:\/\/[^ ]+ is on a host listed before it/,
      );
    }
    // Without a quorum they are endpoints to fail over between.
    expect(loadConfig({ SOLANA_RPC_URLS: twoKeys }).SOLANA_RPC_URLS).toHaveLength(2);
    expect(
      loadConfig({ SOLANA_RPC_URLS: "http://a:8899,http://a:8900", RPC_QUORUM: "2" }).RPC_QUORUM,
    ).toBe(2);
  });

  it("splits SOLANA_RPC_URLS on commas, in order", () => {
    const config = loadConfig({ SOLANA_RPC_URLS: "http://a:1, http://b:2" });
    expect(config.SOLANA_RPC_URLS).toEqual(["http://a:1", "http://b:2"]);
  });

  it("names every bad key in one error", () => {
    let caught: unknown;
    try {
      loadConfig({ PORT: "not-a-port", SOLANA_RPC_URLS: "ftp://x", DECENTRAL_API_KEY: "sk-123" });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const keys = (caught as ConfigError).issues.map((i) => i.key).sort();
    expect(keys).toEqual(["DECENTRAL_API_KEY", "PORT", "SOLANA_RPC_URLS"]);
    expect((caught as ConfigError).message).not.toContain("sk-123");
  });

  it("refuses a PORT or other whole number that is not plain digits, instead of reading it as 0 or 80", () => {
    for (const port of [" ", "1e3", "0x50", "80.0", "-1", "65536", "8O80"]) {
      expect(() => loadConfig({ PORT: port }), JSON.stringify(port)).toThrow(
        /^invalid configuration:\n {2}PORT: /,
      );
    }
    expect(() => loadConfig({ WORKERS: "1e1" })).toThrow(/WORKERS: must be a whole number/);
    expect(() => loadConfig({ RPC_RATE_LIMIT: "1e3" })).toThrow(/RPC_RATE_LIMIT: /);
    expect(loadConfig({ PORT: "0" }).PORT).toBe(0);
    expect(loadConfig({ PORT: " 9000 " }).PORT).toBe(9000);
    expect(loadConfig({ RPC_RATE_LIMIT: "0.5" }).RPC_RATE_LIMIT).toBe(0.5);
  });

  it("refuses an interval longer than a timer can wait, which Node would fire at once", () => {
    // 30 days in ms: Node's timers fire anything above 2^31 - 1 ms at once, every millisecond.
    for (const key of ["ACCOUNT_SNAPSHOT_INTERVAL_MS", "VERIFY_POLL_MS", "LEDGER_POLL_MS"]) {
      expect(() => loadConfig({ [key]: "2592000000" }), key).toThrow(new RegExp(`${key}: `));
    }
    expect(loadConfig({ ACCOUNT_SNAPSHOT_INTERVAL_MS: "2147483647" })).toMatchObject({
      ACCOUNT_SNAPSHOT_INTERVAL_MS: 2_147_483_647,
    });
  });

  // A bad VERIFY_CRON was found only as serve started, after the other keys were read: it was
  // not among "every bad key", so a deploy fixing PORT met it on the next try.
  it("names a VERIFY_CRON that is no cron expression among every other bad key", () => {
    let caught: unknown;
    try {
      loadConfig({ VERIFY_CRON: "every night", PORT: "abc" });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).issues.map((i) => i.key).sort()).toEqual([
      "PORT",
      "VERIFY_CRON",
    ]);
    expect(loadConfig({ VERIFY_CRON: "0 3 * * *" }).VERIFY_CRON).toBe("0 3 * * *");
  });
});

// `AUDIT_PROFILE=x PORT=abc serve` named PORT alone; once PORT was fixed, the next run named the
// profile, which changes what the other settings mean (its cluster, its prices).
describe("AUDIT_PROFILE refused beside another bad key", () => {
  it("is named in the same error, first, with why", () => {
    let caught: unknown;
    try {
      loadConfig({ AUDIT_PROFILE: "mainnet", PORT: "abc" });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const issues = (caught as ConfigError).issues;
    expect(issues.map((i) => i.key)).toEqual(["AUDIT_PROFILE", "PORT"]);
    expect(issues[0]!.message).toMatch(/^profile "mainnet" is neither a built-in profile/);
    // A good profile beside the bad key is not named.
    expect(() => loadConfig({ AUDIT_PROFILE: "localnet", PORT: "abc" })).toThrow(
      expect.objectContaining({ issues: [expect.objectContaining({ key: "PORT" })] }),
    );
  });
});

// `https://rpc.example/#a,https://rpc.example/#b` passed as two endpoints: failover asked the
// one endpoint twice, where a URL listed twice is refused.
describe("SOLANA_RPC_URLS listing one endpoint twice", () => {
  it("is refused when the URLs differ only by a fragment or an empty query", () => {
    for (const urls of [
      "https://rpc.example/#a,https://rpc.example/#b",
      "https://rpc.example/?,https://rpc.example/",
    ]) {
      expect(() => loadConfig({ SOLANA_RPC_URLS: urls }), urls).toThrow(
        /SOLANA_RPC_URLS: lists one URL twice/,
      );
    }
    expect(
      loadConfig({ SOLANA_RPC_URLS: "https://rpc.example/?k=1,https://rpc.example/?k=2" })
        .SOLANA_RPC_URLS,
    ).toHaveLength(2);
  });
});

// `http://node.example.com./` is the same host as `http://node.example.com/` (the dot only says
// the name is fully qualified): listed beside it, it passed as a second endpoint, so failover
// asked one node twice, and a quorum's honest second vote could be that node again.
describe("SOLANA_RPC_URLS naming one host with and without its trailing dot", () => {
  it("is refused as one URL listed twice, with a quorum of 1 or more", () => {
    for (const [urls, quorum] of [
      ["http://node.example.com./,http://node.example.com/", "1"],
      ["https://node.example.com/rpc,https://node.example.com./rpc", "1"],
      ["http://node.example.com.:8899,http://node.example.com:8899", "2"],
      ["http://node.example.com..,http://node.example.com,http://other.example", "2"],
    ] as const) {
      expect(() => loadConfig({ SOLANA_RPC_URLS: urls, RPC_QUORUM: quorum }), urls).toThrow(
        /SOLANA_RPC_URLS: lists one URL twice/,
      );
    }
    // One fully qualified name alone is a valid endpoint.
    expect(loadConfig({ SOLANA_RPC_URLS: "http://node.example.com./" }).SOLANA_RPC_URLS).toEqual([
      "http://node.example.com./",
    ]);
  });
});

// VERIFY_CRON="0 2 31 2 *" (31 February) parsed, so serve started with a nightly verification
// that never ran, and no one was told.
describe("VERIFY_CRON that never fires", () => {
  it("is refused naming the setting, as a cron expression that does not parse is", () => {
    for (const expression of ["0 2 31 2 *", "0 0 30 2 *", "0 0 0 31 4 *"]) {
      expect(() => loadConfig({ VERIFY_CRON: expression }), expression).toThrow(
        /VERIFY_CRON: never fires/,
      );
    }
    // A leap day fires, once in four years.
    expect(loadConfig({ VERIFY_CRON: "0 2 29 2 *" }).VERIFY_CRON).toBe("0 2 29 2 *");
    expect(loadConfig({ VERIFY_CRON: "@daily" }).VERIFY_CRON).toBe("@daily");
  });
});

// croner takes a seventh field (a year): "* * * * * * *" was accepted, and ran the nightly
// verification every second, where the error and README say five or six fields.
describe("VERIFY_CRON of another number of fields", () => {
  it("is refused as no cron expression; five, six and a nickname are taken", () => {
    for (const expression of ["* * * * * * *", "0 2 * * * 2027 *", "0 2 * *"]) {
      expect(() => loadConfig({ VERIFY_CRON: expression }), expression).toThrow(
        /VERIFY_CRON: not a cron expression \(five or six fields, UTC\)/,
      );
    }
    for (const expression of ["0 2 * * *", "0 0 2 * * *", "@weekly"]) {
      expect(loadConfig({ VERIFY_CRON: expression }).VERIFY_CRON).toBe(expression);
    }
  });
});

// Decentral mints the keys: two sharing a fingerprint (found in 7 minutes on two cores) were one
// key to the settlement backfill, which asks the jobs API with the key of a job's fingerprint.
describe("DECENTRAL_API_KEYS of two keys with one fingerprint", () => {
  it("is refused naming the setting; the same key twice is not", () => {
    const k1 = "dcntrl_live_826ac7a850a53198q7z3k9m2w5x8r4t6";
    const k2 = "dcntrl_live_39ad1e3bf1ea0d04q7z3k9m2w5x8r4t6";
    expect(() => loadConfig({ DECENTRAL_API_KEYS: `${k1},${k2}` })).toThrow(
      /DECENTRAL_API_KEYS: two of the keys share one key fingerprint/,
    );
    expect(loadConfig({ DECENTRAL_API_KEYS: `${k1},${k1}` }).DECENTRAL_API_KEYS).toEqual([k1, k1]);
  });
});

// CREDIT_VAULTS="A,A" was read as two vaults, so a key's account snapshot found no single vault
// of the deployment; "fp:A,fp:B" pinned the key to B without a word about A.
describe("CREDIT_VAULTS naming a vault or a key twice", () => {
  it("is refused naming what is listed twice", () => {
    const a = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM";
    const b = "7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU";
    expect(() => loadConfig({ CREDIT_VAULTS: `${a}, ${a}` })).toThrow(
      new RegExp(`CREDIT_VAULTS: lists ${a} twice`),
    );
    expect(() =>
      loadConfig({ CREDIT_VAULTS: `0123456789abcdef:${a},0123456789abcdef:${b}` }),
    ).toThrow(/CREDIT_VAULTS: pins key 0123456789abcdef twice/);
    expect(loadConfig({ CREDIT_VAULTS: `${a},0123456789abcdef:${a}` }).CREDIT_VAULTS).toEqual({
      vaults: [a],
      byKey: { "0123456789abcdef": a },
    });
  });
});

// CREDIT_VAULTS of 43 characters of `1` (43 bytes) was taken as a vault: a character count of
// 32 to 44 passed it, though no account of the chain has that address.
describe("CREDIT_VAULTS naming base58 that is not 32 bytes", () => {
  it("is refused naming the setting, bare or pinned to a key", () => {
    const short = "1".repeat(43);
    const long = "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWMz";
    for (const entry of [short, `0123456789abcdef:${short}`, long]) {
      expect(() => loadConfig({ CREDIT_VAULTS: entry }), entry).toThrow(
        new RegExp(`CREDIT_VAULTS: "${entry}" is not <address> or <fingerprint>:<address>`),
      );
    }
    expect(() => loadConfig({ CREDIT_VAULTS: short })).toThrow(ConfigError);
    expect(loadConfig({ CREDIT_VAULTS: "1".repeat(32) }).CREDIT_VAULTS.vaults).toEqual([
      "1".repeat(32),
    ]);
  });
});

// DECENTRAL_BASE_URL="https://api.example/v1?x=1" was taken: the proxy dropped the query, and the
// account snapshot asked `https://api.example/v1?x=1/account`; a user:password went nowhere.
describe("DECENTRAL_BASE_URL with a query, a fragment or credentials", () => {
  it("is refused, naming the setting and not echoing a password", () => {
    for (const url of ["https://api.example/v1?x=1", "https://api.example/v1#f"]) {
      expect(() => loadConfig({ DECENTRAL_BASE_URL: url }), url).toThrow(
        /DECENTRAL_BASE_URL: holds a query or fragment/,
      );
    }
    let message = "";
    try {
      loadConfig({ DECENTRAL_BASE_URL: "https://user:hunter2secret@api.example/v1" });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("DECENTRAL_BASE_URL: holds a user or password");
    expect(message).not.toContain("hunter2secret");
    expect(loadConfig({ DECENTRAL_BASE_URL: "http://127.0.0.1:9/v1/" }).DECENTRAL_BASE_URL).toBe(
      "http://127.0.0.1:9/v1/",
    );
  });

  it("names the scheme when it is not http or https (a URL all the same)", () => {
    expect(() => loadConfig({ DECENTRAL_BASE_URL: "ftp://api.example/v1" })).toThrow(
      "DECENTRAL_BASE_URL: must be an http:// or https:// URL, not ftp:",
    );
    expect(() => loadConfig({ DECENTRAL_BASE_URL: "api.example/v1" })).toThrow(
      "DECENTRAL_BASE_URL: must be an http:// or https:// URL",
    );
  });
});

// A grace near 2^53 s put a lock's due time past the last instant a Date holds: every statement
// (CLI, API, dashboard, nightly) failed with "Invalid time value" instead of refusing the setting.
describe("LEDGER_GRACE_SECONDS past a year", () => {
  it("is refused by name; a year is taken", () => {
    expect(loadConfig({ LEDGER_GRACE_SECONDS: "31536000" }).LEDGER_GRACE_SECONDS).toBe(31_536_000);
    for (const grace of ["31536001", "99999999999999", "9007199254740991"]) {
      expect(() => loadConfig({ LEDGER_GRACE_SECONDS: grace }), grace).toThrow(
        /^invalid configuration:\n {2}LEDGER_GRACE_SECONDS: Too big: expected number to be <=31536000$/,
      );
    }
  });
});

// ` ./data/audit.db`, or `audit.db\r` from a .env file saved with CRLF, named another file:
// `serve` created a new empty store there and recorded into it, while `verify` with the setting
// written right read the real store and found none of the new jobs.
// `HOST=" "` (a CRLF .env line's "\r", a quoted blank) was taken, and serve said only
// `cannot listen on  :8787: getaddrinfo ENOTFOUND`.
describe("HOST with whitespace around it, or only whitespace", () => {
  it("is refused by name; a name or an address is taken", () => {
    for (const host of [" ", "0.0.0.0\r", " localhost"]) {
      expect(() => loadConfig({ HOST: host }), JSON.stringify(host)).toThrow(
        expect.objectContaining({ issues: [expect.objectContaining({ key: "HOST" })] }),
      );
    }
    expect(loadConfig({ HOST: "0.0.0.0" }).HOST).toBe("0.0.0.0");
    expect(loadConfig({ HOST: "::1" }).HOST).toBe("::1");
  });
});

describe("DATABASE_URL with whitespace around it", () => {
  it("is refused by name, for a path and a URL alike", () => {
    for (const url of [
      " ./data/audit.db",
      "./data/audit.db\r",
      "./data/audit.db ",
      "\tfile:./audit.db",
      "postgres://db.example/audit\n",
    ]) {
      expect(() => loadConfig({ DATABASE_URL: url }), JSON.stringify(url)).toThrow(
        /^invalid configuration:\n {2}DATABASE_URL: starts or ends with whitespace/,
      );
    }
    expect(loadConfig({ DATABASE_URL: "./data/my audit.db" }).DATABASE_URL).toBe(
      "./data/my audit.db",
    );
  });
});

// RPC_RATE_LIMIT=0.0000001 passed: the wait between requests outgrew a timer, Node fired it at
// once, and the pool woke every millisecond with a TimeoutOverflowWarning, sending nothing.
describe("RPC_RATE_LIMIT below one request in 1000 s", () => {
  it("is refused by name; 0.001 is taken", () => {
    expect(loadConfig({ RPC_RATE_LIMIT: "0.001" }).RPC_RATE_LIMIT).toBe(0.001);
    for (const rate of ["0.0000001", "0.0009", "0"]) {
      expect(() => loadConfig({ RPC_RATE_LIMIT: rate }), rate).toThrow(
        /^invalid configuration:\n {2}RPC_RATE_LIMIT: Too small: expected number to be >=0\.001$/,
      );
    }
  });
});

// The worker-counter push was fixed at 1 s and the drain margin at 10 s: tests of a worker's
// counts kept across its death and of a stuck worker waited them out. They are settings now,
// validated as the other timers of `serve --workers`.
describe("WORKER_COUNTERS_MS and DRAIN_MARGIN_MS", () => {
  it("WORKER_COUNTERS_MS defaults to 1000, takes 1 to 3600000, refuses 0, more or non-digits", () => {
    expect(loadConfig({}).WORKER_COUNTERS_MS).toBe(1000);
    expect(loadConfig({ WORKER_COUNTERS_MS: "1" }).WORKER_COUNTERS_MS).toBe(1);
    expect(loadConfig({ WORKER_COUNTERS_MS: "3600000" }).WORKER_COUNTERS_MS).toBe(3_600_000);
    for (const ms of ["0", "3600001", "1e3", "-5", " "]) {
      expect(() => loadConfig({ WORKER_COUNTERS_MS: ms }), ms).toThrow(/WORKER_COUNTERS_MS: /);
    }
  });

  it("DRAIN_MARGIN_MS defaults to 10000, takes 0 to 3600000, and refuses more or non-digits", () => {
    expect(loadConfig({}).DRAIN_MARGIN_MS).toBe(10_000);
    expect(loadConfig({ DRAIN_MARGIN_MS: "0" }).DRAIN_MARGIN_MS).toBe(0);
    expect(loadConfig({ DRAIN_MARGIN_MS: "3600000" }).DRAIN_MARGIN_MS).toBe(3_600_000);
    for (const ms of ["3600001", "1e3", "-5", " "]) {
      expect(() => loadConfig({ DRAIN_MARGIN_MS: ms }), ms).toThrow(/DRAIN_MARGIN_MS: /);
    }
  });
});

// The drop's hold and the pool's longest wait on a 429's pause: a deployment sets them.
describe("VERIFY_DROP_HOLD_MS and RPC_RATE_LIMIT_WAIT_MS", () => {
  it("default to 300000 and 15000, take 0 up to a timer's longest wait, refuse the rest by name", () => {
    expect(loadConfig({}).VERIFY_DROP_HOLD_MS).toBe(300_000);
    expect(loadConfig({}).RPC_RATE_LIMIT_WAIT_MS).toBe(15_000);
    for (const key of ["VERIFY_DROP_HOLD_MS", "RPC_RATE_LIMIT_WAIT_MS"] as const) {
      expect(loadConfig({ [key]: "0" })[key]).toBe(0);
      expect(loadConfig({ [key]: "60000" })[key]).toBe(60_000);
      for (const ms of ["5m", "-1", "1e3", " ", "9999999999999"]) {
        expect(() => loadConfig({ [key]: ms }), `${key}=${ms}`).toThrow(new RegExp(`${key}: `));
      }
    }
  });

  it("reach the nightly run's verifier", () => {
    expect(nightlyVerifierOptions(loadConfig({ VERIFY_DROP_HOLD_MS: "60000" }))).toMatchObject({
      dropHoldMs: 60_000,
    });
  });
});
