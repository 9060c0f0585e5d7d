import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchReceipts } from "./ingest-bench.js";
import { percentile } from "./stats.js";

/**
 * `import` beside a running `serve` on one SQLite file, as deployed: `serve` (one process) and
 * `import` of `count` receipts from the CLI, while an API client writes every 20 ms (one
 * receipt through `POST /jobs`, or with `--reverify` an admin `POST /jobs/:id/reverify`).
 * Prints the import's time and the API writes' statuses and latency (p50, p99, max): `serve`
 * waits 500 ms for the write lock, then answers 503. `--alone`: the import with nothing beside.
 *
 *   npx tsx bench/import-beside-serve.ts [count] [--reverify | --alone]
 */

const count = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 80_000);
const reverify = process.argv.includes("--reverify");
const alone = process.argv.includes("--alone");
const dir = mkdtempSync(join(tmpdir(), "import-beside-"));
const db = join(dir, "audit.db");
const cli = ["--import", "tsx", join(import.meta.dirname, "..", "src", "cli.ts")];
const run = (args: string[]) =>
  execFileSync(process.execPath, [...cli, ...args], { encoding: "utf8" });

run(["db", "migrate", "--db", db]);
const token = run(["tokens", "create", "--role", "admin", "--name", "bench", "--db", db])
  .split(/\s+/)
  .find((word) => word.startsWith("da_"));
if (token === undefined) throw new Error("no token printed");
const file = join(dir, "receipts.jsonl");
writeFileSync(
  file,
  `${benchReceipts(count, "imp")
    .map((r) => JSON.stringify(r))
    .join("\n")}\n`,
);

async function besideService() {
  const serve = spawn(process.execPath, [...cli, "serve", "--port", "0", "--db", db], {
    env: { ...process.env, WORKERS: "1", SOLANA_RPC_URLS: "http://127.0.0.1:9" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve) => {
    let out = "";
    serve.stdout.on("data", (chunk: Buffer) => {
      out += String(chunk);
      const match = out.match(/"url":"(http[^"]+)"/);
      if (match?.[1]) resolve(match[1]);
    });
  });
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const [first] = benchReceipts(1, "api0x");
  const write = (i: number) =>
    reverify && i > 0
      ? fetch(`${url}/jobs/${first?.job_id}/reverify`, { method: "POST", headers })
      : fetch(`${url}/jobs`, {
          method: "POST",
          headers,
          body: JSON.stringify(i === 0 ? [first] : benchReceipts(1, `api${i}x`)),
        });
  return { serve, write };
}
const service = alone ? null : await besideService();

const started = performance.now();
const importing = spawn(process.execPath, [...cli, "import", file, "--db", db], {
  stdio: ["ignore", "ignore", "inherit"],
});
let importCode: number | null | undefined;
let importSeconds = 0;
importing.on("exit", (code) => {
  importCode = code;
  importSeconds = (performance.now() - started) / 1000;
});
const statuses: Record<number, number> = {};
const latencies: number[] = [];
for (let i = 0; service !== null && importCode === undefined; i++) {
  const sent = performance.now();
  const res = await service.write(i);
  await res.text();
  latencies.push(performance.now() - sent);
  statuses[res.status] = (statuses[res.status] ?? 0) + 1;
  await new Promise((resolve) => setTimeout(resolve, 20));
}
if (service === null) await once(importing, "exit");
else {
  service.serve.kill("SIGTERM");
  await once(service.serve, "exit");
}
rmSync(dir, { recursive: true, force: true });
latencies.sort((a, b) => a - b);
const ms = (q: number) => percentile(latencies, q).toFixed(1);
console.log(
  `import of ${count} receipts: exit ${importCode}, ${importSeconds.toFixed(1)} s` +
    (service === null
      ? ", alone"
      : `; API ${reverify ? "reverify" : "POST /jobs"} every 20 ms: ${JSON.stringify(statuses)}, ` +
        `p50 ${ms(50)} ms, p99 ${ms(99)} ms, max ${(latencies.at(-1) ?? 0).toFixed(1)} ms`),
);
