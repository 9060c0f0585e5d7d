import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { inspectTransaction } from "../src/chain/inspect.js";
import { loadConfig } from "../src/config.js";
import { addr, JOB_ID } from "./fixtures/transactions/parties.js";
import { cliArgv } from "./support/service-process.js";

const dir = join(import.meta.dirname, "fixtures/transactions");
const fixture = (name: string) => join(dir, name);
const config = loadConfig({});
const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
  );
});

/** A JSON-RPC endpoint that answers getTransaction from a table of saved reply texts. */
async function startNode(replies: Record<string, string>): Promise<string> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const call = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      const saved = replies[call.params[0]];
      res.writeHead(200, { "content-type": "application/json" });
      res.end(saved ?? JSON.stringify({ jsonrpc: "2.0", id: call.id, result: null }));
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function tempFile(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "tx-inspect-")), name);
  writeFileSync(path, text);
  return path;
}

const fieldNames = [
  "signature",
  "slot",
  "blockTime",
  "succeeded",
  "err",
  "fee",
  "feePayer",
  "version",
  "accounts",
  "tokenChanges",
  "solChanges",
  "memos",
  "programs",
  "tokenInstructions",
  "innerInstructionsKnown",
  // Token accounts the transaction created (after it, not before): present when the node sent
  // token balances, as every fixture here has.
  "openedTokenAccounts",
  // Each token account's owner after the transaction, balance moved or not.
  "ownersAfter",
  // Every account the token balances name, moved or not.
  "tokenBalanceAccounts",
  // Token accounts the transaction closed (before it, not after).
  "closedTokenAccounts",
];

describe("tx inspect", () => {
  it.each([
    "escrow-lock-legacy.json.json",
    "escrow-lock-legacy.jsonParsed.json",
    "escrow-lock-legacy.base64.json",
    "settle-v0.json.json",
    "settle-v0.jsonParsed.json",
    "settle-v0.base64.json",
    "token2022-transfer.json.json",
  ])("prints the documented fields with amounts as decimal strings for %s", async (file) => {
    const facts = await inspectTransaction(fixture(file), { config });
    expect(Object.keys(facts)).toEqual(fieldNames);
    expect(typeof facts.fee).toBe("string");
    expect(facts.tokenChanges.length).toBeGreaterThan(0);
    for (const change of facts.tokenChanges) {
      expect(Object.keys(change)).toEqual([
        "account",
        "owner",
        "mint",
        "programId",
        "decimals",
        "pre",
        "post",
        "delta",
      ]);
      expect(change.delta).toMatch(/^-?\d+$/);
      expect(BigInt(change.post) - BigInt(change.pre)).toBe(BigInt(change.delta));
    }
  });

  it("reads a saved reply from stdin when the target is -", async () => {
    const text = readFileSync(fixture("settle-v0.base64.json"), "utf8");
    const facts = await inspectTransaction("-", { config, stdin: Readable.from([text]) });
    expect(facts.version).toBe(0);
    expect(facts.memos).toEqual([`decentral:settle:${JOB_ID}`]);
  });

  it("fetches a signature from the first RPC endpoint", async () => {
    const text = readFileSync(fixture("escrow-lock-legacy.json.json"), "utf8");
    const signature = JSON.parse(text).result.transaction.signatures[0] as string;
    const url = await startNode({ [signature]: text });
    const facts = await inspectTransaction(signature, {
      config: loadConfig({ SOLANA_RPC_URLS: `${url},http://127.0.0.1:9` }),
    });
    expect(facts.signature).toBe(signature);
    expect(facts.feePayer).toBe(addr.escrowAuthority);
  });

  it("says a signature the node does not know was not found", async () => {
    const url = await startNode({});
    const signature = JSON.parse(readFileSync(fixture("failed-lock.json.json"), "utf8")).result
      .transaction.signatures[0];
    await expect(
      inspectTransaction(signature, { config: loadConfig({ SOLANA_RPC_URLS: url }) }),
    ).rejects.toMatchObject({ code: "not_found", message: expect.stringMatching(/not found/) });
  });

  it("says a saved reply with a null result was not found", async () => {
    const path = tempFile("null.json", '{"jsonrpc":"2.0","result":null,"id":1}');
    await expect(inspectTransaction(path, { config })).rejects.toMatchObject({ code: "not_found" });
  });

  it("rejects a malformed saved response with the reason", async () => {
    const reply = JSON.parse(readFileSync(fixture("escrow-lock-legacy.json.json"), "utf8"));
    reply.result.meta.postBalances.pop();
    const path = tempFile("short.json", JSON.stringify(reply));
    await expect(inspectTransaction(path, { config })).rejects.toMatchObject({
      code: "malformed_transaction",
      message: expect.stringMatching(/postBalances/),
    });
    const notJson = tempFile("garbage.json", "<html>502</html>");
    await expect(inspectTransaction(notJson, { config })).rejects.toMatchObject({
      code: "malformed_transaction",
    });
  });

  it("tells a missing file from an invalid signature", async () => {
    await expect(inspectTransaction("./no/such/reply.json", { config })).rejects.toThrow(
      "./no/such/reply.json is neither a transaction signature (64 bytes, base58) nor a file",
    );
    await expect(inspectTransaction("5".repeat(60), { config })).rejects.toThrow(
      /not a valid transaction signature/,
    );
  });
});

/** Runs the real CLI in a child process. */
function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      cliArgv(args),
      { cwd: join(import.meta.dirname, "..") },
      (error, stdout, stderr) => {
        resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

describe("decentral-audit tx inspect (binary)", () => {
  it("prints pretty JSON and exits 0 for a saved reply, and exits non-zero with a message for a malformed one", async () => {
    const ok = await runCli(["tx", "inspect", fixture("big-balances.json.json")]);
    expect(ok.code).toBe(0);
    const facts = JSON.parse(ok.stdout);
    expect(facts.solChanges[0].pre).toBe("12345678901234567890");
    expect(ok.stdout).toContain('\n  "signature": ');

    const bad = await runCli(["tx", "inspect", tempFile("bad.json", '{"slot":1}')]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/malformed transaction: meta is missing/);
    expect(bad.stdout).toBe("");
  });
});

// The parser's message quotes the text around the fault: `tx inspect /etc/passwd` printed
// "root:x:0:0", as `--profile` did (fixed there): a secrets file named by mistake leaked a part.
describe("tx inspect of a file that is not JSON", () => {
  it("says so with where it stops, and none of the file's text", async () => {
    for (const [name, text] of [
      ["passwd", "root:x:0:0:root:/root:/bin/bash\n"],
      ["key.json", '{"result": sk-live-hunter2secret}'],
      ["cut.json", '{"result": {"slot": 1, "tok": "sk-live-hunter2secret"'],
    ] as const) {
      const error = (await inspectTransaction(tempFile(name, text), { config }).then(
        () => null,
        (e: unknown) => e,
      )) as Error | null;
      expect(error, name).toMatchObject({ code: "malformed_transaction" });
      expect(error?.message, name).toMatch(/^not a JSON document/);
      expect(error?.message, name).not.toMatch(/root:x|hunter2|sk-live/);
    }
  });
});
