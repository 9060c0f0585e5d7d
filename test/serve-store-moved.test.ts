import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { address, jobId, signature } from "./support/recorder-fixtures.js";
import { startCli } from "./support/service-process.js";

/**
 * `serve --workers 2` as real processes on a SQLite file whose folder an operator renames under
 * it (a data folder moved by a deploy script, the file deleted by a clean-up). Receipts written
 * then go to a file no `verify`, report or new process opens; a worker restarted then created a
 * new, empty store at the path and led a second verifier on it.
 */

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** An upstream that counts the paid jobs it ran: each answer is a fresh job. */
async function upstream() {
  const state = { jobs: 0 };
  const server = http.createServer(async (req, res) => {
    for await (const _ of req);
    if ((req.url ?? "").startsWith("/v1/jobs/")) {
      res.writeHead(404, { "content-type": "application/json" }).end("{}");
      return;
    }
    state.jobs++;
    res.writeHead(200, {
      "content-type": "application/json",
      "x-decentral-job-id": jobId(),
      "x-decentral-tx-signature": signature(),
      "x-decentral-worker": address(),
    });
    res.end(JSON.stringify({ model: "m", usage: { prompt_tokens: 3, completion_tokens: 5 } }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, state, close: () => server.close() };
}

async function post(base: string): Promise<{ status: number; code?: string }> {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: "Bearer dcntrl_test", "content-type": "application/json" },
    body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "hi" }] }),
  });
  const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
  return { status: res.status, ...(body.error?.code ? { code: body.error.code } : {}) };
}

// Not the first start's advice (create one with `db migrate`): that would start an empty store
// beside the receipts written to the moved file.
const missingStoreText = (db: string) =>
  `the SQLite store at ${db} is gone: this service opened it at start, so it was moved or removed since; put it back where it was (\`db migrate\` or a new \`serve\` there would start an empty store beside the receipts written to the moved file)`;

describe("serve --workers 2 whose database folder is renamed under it", () => {
  it("turns paid jobs away before they run, and a restarted worker creates no new empty store at the path", async ({
    onTestFinished,
  }) => {
    const root = mkdtempSync(join(tmpdir(), "store-moved-"));
    dirs.push(root);
    mkdirSync(join(root, "data"));
    const db = join(root, "data", "audit.db");
    const up = await upstream();
    const serve = startCli(["serve", "--port", "0", "--db", db, "--profile", "localnet"], {
      WORKERS: "2",
      SOLANA_RPC_URLS: "http://127.0.0.1:9",
      DECENTRAL_BASE_URL: `${up.url}/v1`,
      WORKER_RESTART_MS: "100",
    });
    onTestFinished(() => {
      serve.child.kill("SIGKILL");
      up.close();
    });
    const listening = await serve.waitForLog((l) => l.msg === "decentral-audit listening", 60_000);
    await serve.waitForLog((l) => l.msg === "serve cluster ready", 60_000);
    const base = String(listening.url);
    expect(await post(base)).toEqual({ status: 200 });

    renameSync(join(root, "data"), join(root, "data-moved"));
    // Each worker looks at its database's path at most once a second, when asked to forward:
    // past that, every paid job is turned away before it runs (nothing is charged for a job
    // whose receipt would go where nobody looks), and /readyz fails.
    await new Promise((r) => setTimeout(r, 1500));
    const ran = up.state.jobs;
    const answers = await Promise.all(Array.from({ length: 8 }, () => post(base)));
    expect(answers).toEqual(
      Array.from({ length: 8 }, () => ({ status: 503, code: "receipt_store_unavailable" })),
    );
    expect(up.state.jobs).toBe(ran);

    // A worker dies and is restarted: it does not make a new empty store at the old path.
    const workers = new Set(
      serve.logs.filter((l) => l.msg === "decentral-audit listening").map((l) => Number(l.pid)),
    );
    process.kill([...workers][0] as number, "SIGKILL");
    await serve.waitForLog((l) => l.msg === "serve worker died; restarting it", 20_000);
    await new Promise((r) => setTimeout(r, 3000));
    expect(existsSync(db)).toBe(false);
    expect(existsSync(join(root, "data"))).toBe(false);
    // The restarted worker says why it cannot start, naming the path and what to do, rather
    // than serving a new store there.
    await serve.waitForLog(
      (l) => l.level === 50 && l.msg === `serve worker could not start: ${missingStoreText(db)}`,
      20_000,
    );
  }, 120_000);
});
