import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { cliArgv } from "./support/service-process.js";

// Every CLI process (each test's, each cron run's) pays for what it loads before it starts.
const hooks = `export async function resolve(s, c, next) {
  const r = await next(s, c);
  process.stderr.write("MODULE " + process.pid + " " + r.url + "\\n");
  return r;
}`;
const register = `import { register } from "node:module";
register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;

/** The URLs of the modules a CLI run with `args` loads, once it exits with `status`. */
function modulesLoaded(args: string[], status = 0): string[] {
  const run = spawnSync(
    process.execPath,
    [
      "--import",
      `data:text/javascript,${encodeURIComponent(register)}`,
      ...cliArgv(args, { packagesApart: true }),
    ],
    { encoding: "utf8", env: { ...process.env, DATABASE_URL: "", SOLANA_RPC_URLS: "" } },
  );
  expect(run.status, run.stderr).toBe(status);
  return [...run.stderr.matchAll(/^MODULE \d+ (.*)$/gm)].map((m) => m[1] ?? "");
}

/** The packages a CLI run with `args` loads, by name. */
function packagesLoaded(args: string[]): Set<string> {
  const names = new Set<string>();
  for (const url of modulesLoaded(args)) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (m) names.add(m[1] ?? "");
  }
  return names;
}

describe("CLI start-up", () => {
  it("loads no store, chain, validation or logging package for --help", () => {
    const loaded = packagesLoaded(["--help"]);
    for (const name of ["drizzle-orm", "zod", "croner", "pg", "@solana/kit", "pino", "litesvm"]) {
      expect(loaded, name).not.toContain(name);
    }
  });

  it("loads neither PostgreSQL's client nor the chain's for a SQLite report", () => {
    const db = join(mkdtempSync(join(tmpdir(), "startup-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    store.close();
    const loaded = packagesLoaded(["report", "reconciliation", "--db", db, "--since", "1h"]);
    expect(loaded).toContain("drizzle-orm");
    for (const name of ["pg", "@solana/kit", "litesvm"]) expect(loaded, name).not.toContain(name);
  });

  // The store modules' PostgreSQL twins, PostgreSQL's schema and drizzle's pg-core entry (not
  // the few of its modules drizzle's core loads itself) cost a SQLite command a third of its CPU.
  it("loads no PostgreSQL store module, schema or driver for SQLite commands", () => {
    const db = join(mkdtempSync(join(tmpdir(), "startup-")), "audit.db");
    const store = openSqliteStore(db);
    migrateStore(store);
    store.close();
    const runs: [string[], number][] = [
      [["tokens", "list", "--db", db], 0],
      [["report", "reconciliation", "--db", db, "--since", "1h"], 0],
      // An RPC that refuses: the run gives up (exit 2) after loading what a verify loads.
      [
        ["verify", "--db", db, "--since", "1h", "--rpc", "http://127.0.0.1:9", "--timeout", "2s"],
        2,
      ],
    ];
    for (const [args, status] of runs) {
      const postgres = modulesLoaded(args, status).filter(
        (url) =>
          /\/(db|store)\/pg\//.test(url) ||
          /\/node_modules\/(pg|pg-pool|drizzle-orm\/node-postgres)\//.test(url) ||
          url.endsWith("/drizzle-orm/pg-core/index.js"),
      );
      expect(postgres, args.join(" ")).toEqual([]);
    }
  });

  // The primary of `serve --workers N` forks, restarts and counts; the service runs in the
  // workers. Loading it in the primary too cost each cluster start a process's worth of CPU.
  it("loads no service, nightly run or verifier module in the primary of a cluster", async () => {
    const db = join(mkdtempSync(join(tmpdir(), "startup-")), "audit.db");
    const args = ["serve", "--port", "0", "--db", db, "--profile", "localnet"];
    const child = spawn(
      process.execPath,
      [
        "--import",
        `data:text/javascript,${encodeURIComponent(register)}`,
        ...cliArgv(args, { packagesApart: true }),
      ],
      {
        env: {
          ...process.env,
          DATABASE_URL: "",
          WORKERS: "2",
          SOLANA_RPC_URLS: "http://127.0.0.1:9",
          DECENTRAL_BASE_URL: "http://127.0.0.1:9/v1",
        },
        stdio: ["ignore", "ignore", "pipe"],
        // Its own process group: the workers end with it.
        detached: true,
      },
    );
    const primary: string[] = [];
    try {
      // What the primary loads, it loads before it forks: a worker's first module ends the test.
      await new Promise<void>((resolve, reject) => {
        createInterface({ input: child.stderr }).on("line", (line) => {
          const m = /^MODULE (\d+) (.*)$/.exec(line);
          if (m === null) return;
          if (Number(m[1]) === child.pid) primary.push(m[2] ?? "");
          else resolve();
        });
        child.once("exit", (code) => reject(new Error(`serve exited ${code} before a fork`)));
      });
    } finally {
      process.kill(-(child.pid as number), "SIGKILL");
    }
    expect(primary.some((url) => /\/serve-cluster\.[jt]s$/.test(url))).toBe(true);
    const service = primary.filter((url) =>
      /\/main\.[jt]s$|\/api\/app\.[jt]s$|\/node_modules\/(@hono|hono)\//.test(url),
    );
    expect(service).toEqual([]);
    // Nor the nightly run and the verifier behind it: the primary only checks that VERIFY_CRON
    // parses (croner); a worker's background work runs the schedule.
    const verification = primary.filter((url) =>
      /\/nightly\/(nightly-run|verify-command)\.[jt]s$|\/verify\/checks\.[jt]s$|\/node_modules\/cli-progress\//.test(
        url,
      ),
    );
    expect(verification).toEqual([]);
  });
});
