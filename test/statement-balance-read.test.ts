import { existsSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Keypair } from "@solana/web3.js";
import { chromium } from "playwright-core";
import { describe, expect, it, onTestFinished } from "vitest";
import { createApp } from "../src/api/app.js";
import { createToken } from "../src/auth/tokens.js";
import type { RpcPool } from "../src/chain/rpc-pool.js";
import {
  buildStatement,
  findingCount,
  statementToCsv,
  statementToJson,
} from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { periodEdge, vaultReader } from "./support/ledger-periods.js";
import { AuthorityType, type Scenario, useAdversaryHarness } from "./support/operator.js";
import { ownerlessNode, rewritingNode } from "./support/rewriting-node.js";

/**
 * A finance user reads a vault's statement (API, CSV, dashboard) while the vault's last balance
 * read finds it owned by another than the escrow authority, or with a delegate: the nightly run
 * says so (`vaultOwnersNow`, `vaultDelegatesNow`), and so must every statement, since no line
 * may show it (a node leaving owners out of token balances, an Approve inside a call served with
 * `[]` inner instructions, a period before the handover).
 */
const log = createLogger({ level: "silent" });

const h = useAdversaryHarness();

/**
 * The next whole second, the chain's clock moved on past it rather than waited for: a period's
 * edge. The reads, the statements' ends and the receipts keep that clock.
 */
const periodStart = () => periodEdge(h);

/** A scenario whose receipts are dated by the chain's clock, which the edges move on. */
const scenario = async () => (await h.scenario()).recordOnChainClock();

/** `rpc`, the last instruction of `signature` left out and its inner instructions served `[]`. */
function droppingLast(rpc: RpcPool, signature: string): RpcPool {
  type Result = {
    transaction: { message: { instructions: unknown[] } };
    meta: { innerInstructions: unknown[] | null };
  };
  return rewritingNode(rpc, (s) =>
    s === signature
      ? (result: Result) => {
          result.transaction.message.instructions.pop();
          result.meta.innerInstructions = [];
        }
      : undefined,
  );
}

/** `rpc`, its balance reads naming no owner of the vault's account. */
function ownerUnnamed(rpc: RpcPool): RpcPool {
  return new Proxy(rpc, {
    get(target, key, receiver) {
      if (key !== "getTokenAccount") return Reflect.get(target, key, receiver);
      return async (...args: Parameters<RpcPool["getTokenAccount"]>) => {
        const read = await target.getTokenAccount(...args);
        return read.account ? { ...read, account: { ...read.account, owner: null } } : read;
      };
    },
  });
}

/** One ledger round of `vault` through `rpc`, then its statement of `[from, to)`. */
async function statementAfterRead(c: Scenario, rpc: RpcPool, vault: string, from: number) {
  await h.finalized();
  const reader = vaultReader(h, c, vault, rpc, { now: () => h.op.now() });
  await reader.syncVault(vault);
  return statementOf(c, vault, from, h.op.now() + 1_000);
}

async function statementOf(c: Scenario, vault: string, from: number, to: number) {
  const statement = await buildStatement(
    c.store,
    { from, to, vault },
    { profile: c.profile, graceSeconds: 0 },
  );
  return { statement, s: statement.vaults[0]! };
}

/** The CSV rows of a finding, their cells up to the period's columns. */
function csvRows(csv: string, finding: string) {
  const [head, ...rows] = csv.trimEnd().split("\r\n");
  const names = head!.split(",");
  return rows
    .map((r) => r.split(","))
    .filter((cells) => cells[0] === finding)
    .map((cells) => Object.fromEntries(names.map((n, i) => [n, cells[i]])));
}

/** The dashboard's statement page of the vault, as a signed-in reader sees it. */
async function dashboardText(c: Scenario, vault: string) {
  const app = createApp({
    store: c.store,
    log,
    statement: { profile: c.profile, graceSeconds: 0 },
  });
  const { token } = await createToken(c.store, { role: "read", name: "finance" });
  const signIn = await app.request("/dashboard/sign-in", {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      origin: "http://localhost",
    },
    body: new URLSearchParams({ token, next: "/dashboard" }).toString(),
  });
  const cookie = /(da_session=[^;]+)/.exec(signIn.headers.get("set-cookie") ?? "")?.[1] ?? "";
  const day = new Date(h.op.now()).toISOString().slice(0, 10);
  const res = await app.request(
    `/dashboard/statement?from=${day}&to=${day}&vault=${encodeURIComponent(vault)}`,
    { headers: { cookie } },
  );
  expect(res.status).toBe(200);
  const page = await res.text();
  const api = await app.request(
    `/reports/statement?from=${day}&vault=${encodeURIComponent(vault)}&to=${new Date(h.op.now() + 86_400_000).toISOString().slice(0, 10)}`,
    { headers: { authorization: `Bearer ${token}` } },
  );
  expect(api.status).toBe(200);
  return { page, api: (await api.json()) as ReturnType<typeof statementToJson> };
}

describe("a vault whose delegate only the balance read shows", () => {
  it("is said by the statement, its JSON and CSV, and the dashboard", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = periodStart();
    const delegate = Keypair.generate().publicKey.toBase58();
    const approveTx = h.op.send([
      h.op.newOwnerAtaIx(),
      h.op.approve(vault, delegate, 400_000n),
    ]).signature;
    onTestFinished(() => {
      h.op.send([h.op.revoke(vault)]);
    });
    const { statement, s } = await statementAfterRead(
      c,
      droppingLast(h.rpc, approveTx),
      vault,
      from,
    );
    // No line shows the Approve: before, the statement said nothing of a delegate.
    expect(s.delegateApprovals).toEqual([]);
    expect(s.delegateRead).toEqual({
      finding: "vault_delegate_read",
      delegate,
      delegatedUnits: 400_000n,
      slot: expect.any(Number),
      readAt: expect.any(String),
    });
    expect(s.ownerRead).toBeNull();
    expect(findingCount(s)).toBe(1);
    expect(statementToJson(statement).vaults[0]?.delegateRead).toMatchObject({
      delegate,
      delegatedUnits: "400000",
    });
    expect(csvRows(statementToCsv(statement), "vault_delegate_read")).toEqual([
      expect.objectContaining({
        vault,
        amountUnits: "400000",
        memo: `"delegate=${delegate}; slot=${s.delegateRead?.slot}"`,
      }),
    ]);
    const shown = await dashboardText(c, vault);
    expect(shown.page).toContain(`The vault has a delegate, <span class="mono">${delegate}</span>`);
    expect(shown.page).toContain("can spend 0.400000 USDC of it alone");
    expect(shown.api.vaults[0]?.delegateRead).toMatchObject({ delegate, delegatedUnits: "400000" });

    // Revoked, the next read says nobody: the finding goes with it.
    h.op.send([h.op.revoke(vault)]);
    const after = await statementAfterRead(c, h.rpc, vault, from);
    expect(after.s.delegateRead).toBeNull();
  });

  it("is said by a statement of a period before the Approve, an honest node too", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const before = periodStart();
    const from = periodStart();
    const delegate = Keypair.generate().publicKey.toBase58();
    h.op.send([h.op.approve(vault, delegate, 250_000n)]);
    onTestFinished(() => {
      h.op.send([h.op.revoke(vault)]);
    });
    const now = await statementAfterRead(c, h.rpc, vault, from);
    // The period holding the Approve says it once, by its line.
    expect(now.s.delegateApprovals.map((d) => d.delegate)).toEqual([delegate]);
    expect(now.s.delegateRead).toBeNull();
    // The period before it holds no line of it, yet the delegate may spend the vault now.
    const earlier = await statementOf(c, vault, before, from);
    expect(earlier.s.delegateApprovals).toEqual([]);
    expect(earlier.s.delegateRead).toMatchObject({ delegate, delegatedUnits: 250_000n });
  });
});

describe("a vault handed to another, its owner shown by the balance read alone", () => {
  it("is said by the statement, its CSV and the dashboard; once when a line says it too", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = periodStart();
    h.op.send([h.op.setAuthority(vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
    onTestFinished(() => h.op.giveBackVault(vault));
    const { statement, s } = await statementAfterRead(c, ownerlessNode(h.rpc), vault, from);
    expect(s.ownerChanges).toEqual([]);
    expect(s.ownerRead).toEqual({
      finding: "vault_owner_read",
      owner: h.op.attacker.address,
      slot: expect.any(Number),
      readAt: expect.any(String),
    });
    expect(findingCount(s)).toBe(1);
    expect(csvRows(statementToCsv(statement), "vault_owner_read")).toEqual([
      expect.objectContaining({
        vault,
        memo: `"owner=${h.op.attacker.address}; slot=${s.ownerRead?.slot}"`,
      }),
    ]);
    const shown = await dashboardText(c, vault);
    expect(shown.page).toContain(
      `The vault is owned by <span class="mono">${h.op.attacker.address}</span>, not the escrow authority, by its last balance read`,
    );
    expect(shown.api.vaults[0]?.ownerRead).toMatchObject({ owner: h.op.attacker.address });

    // Read by an honest node (another store), the line says it: one cause, said once.
    const honest = await scenario();
    const read = await statementAfterRead(honest, h.rpc, vault, from);
    expect(read.s.ownerChanges.map((o) => [o.finding, o.owner])).toEqual([
      ["vault_owner_changed", h.op.attacker.address],
      ["vault_owner_now", h.op.attacker.address],
    ]);
    expect(read.s.ownerRead).toBeNull();
  });

  it("says the owner unproven when the read names none", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = periodStart();
    const rpc = ownerUnnamed(ownerlessNode(h.rpc));
    const { statement, s } = await statementAfterRead(c, rpc, vault, from);
    expect(s.ownerRead).toMatchObject({ finding: "vault_owner_read", owner: null });
    expect(csvRows(statementToCsv(statement), "vault_owner_read")).toEqual([
      expect.objectContaining({ memo: `"owner=not named; slot=${s.ownerRead?.slot}"` }),
    ]);
    expect((await dashboardText(c, vault)).page).toContain("named no owner");
  });
});

const chromiumPath = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser"]
  .filter((p): p is string => Boolean(p))
  .find((p) => existsSync(p));
const inCi = Boolean(process.env.CI) && process.env.CI !== "false";

describe.skipIf(!chromiumPath && !inCi)("the statement page in Chromium", () => {
  it("names the owner and the delegate the balance read found, as the finance user reads it", async () => {
    if (!chromiumPath) throw new Error("CI is set, so the browser test must run: no Chromium");
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = periodStart();
    const delegate = Keypair.generate().publicKey.toBase58();
    // The new owner approves the delegate: a SetAuthority clears any delegate before it.
    h.op.send([h.op.setAuthority(vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
    onTestFinished(() => h.op.giveBackVault(vault));
    const approveTx = h.op.send([
      h.op.newOwnerAtaIx(),
      h.op.approve(vault, delegate, 300_000n, h.op.attacker.address),
    ]).signature;
    // A node leaving owners out of token balances and the Approve out of its transaction.
    await statementAfterRead(c, droppingLast(ownerlessNode(h.rpc), approveTx), vault, from);
    const app = createApp({
      store: c.store,
      log,
      statement: { profile: c.profile, graceSeconds: 0 },
    });
    const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" });
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const { token } = await createToken(c.store, { role: "read", name: "finance" });
    const browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    });
    onTestFinished(() => browser.close());
    const page = await browser.newPage();
    await page.goto(`${base}/dashboard/statement?vault=${vault}`);
    await page.getByLabel("Access token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.waitForURL(/\/dashboard\/statement/);
    const findings = page.locator("h3", { hasText: "Other findings" }).locator("+ ul");
    await expect(findings.textContent()).resolves.toContain(
      `The vault is owned by ${h.op.attacker.address}, not the escrow authority, by its last balance read`,
    );
    await expect(findings.textContent()).resolves.toContain(
      `The vault has a delegate, ${delegate}, who can spend 0.300000 USDC of it alone`,
    );
  });
});

describe("a statement of a period that ended before the balance read", () => {
  it("says when the read was made and its slot, in JSON, CSV and on the page", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = periodStart();
    const to = periodStart();
    // The period is over; then the vault is handed away and the new owner approves a delegate.
    h.op.send([h.op.setAuthority(vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
    onTestFinished(() => h.op.giveBackVault(vault));
    const delegate = Keypair.generate().publicKey.toBase58();
    const approveTx = h.op.send([
      h.op.newOwnerAtaIx(),
      h.op.approve(vault, delegate, 200_000n, h.op.attacker.address),
    ]).signature;
    const beforeRead = h.op.now();
    await statementAfterRead(c, droppingLast(ownerlessNode(h.rpc), approveTx), vault, from);
    const afterRead = h.op.now();
    const { statement, s } = await statementOf(c, vault, from, to);
    const readAt = s.ownerRead?.readAt ?? "";
    expect(Date.parse(readAt)).toBeGreaterThanOrEqual(Math.floor(beforeRead / 1000) * 1000);
    expect(Date.parse(readAt)).toBeLessThanOrEqual(afterRead);
    expect(s.delegateRead).toMatchObject({ delegate, readAt });
    const csv = statementToCsv(statement);
    expect(csvRows(csv, "vault_owner_read")).toEqual([
      expect.objectContaining({
        blockTime: readAt,
        memo: `"owner=${h.op.attacker.address}; slot=${s.ownerRead?.slot}"`,
      }),
    ]);
    expect(csvRows(csv, "vault_delegate_read")).toEqual([
      expect.objectContaining({
        blockTime: readAt,
        amountUnits: "200000",
        memo: `"delegate=${delegate}; slot=${s.delegateRead?.slot}"`,
      }),
    ]);
    expect(statementToJson(statement).vaults[0]).toMatchObject({
      ownerRead: { readAt },
      delegateRead: { readAt, delegatedUnits: "200000" },
    });
    const page = (await dashboardText(c, vault)).page;
    expect(page).toContain(`by its last balance read (slot ${s.ownerRead?.slot}, made ${readAt})`);
  });
});

describe("an Approve of the period whose delegate the read finds with another amount", () => {
  it("still says the read: what the delegate may spend now, beside what it was given", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = periodStart();
    const thief = h.op.attackerAccount(0n);
    // The attacker is made the delegate, spends part of it: the rest it may still take.
    const approveTx = h.op.send([h.op.approve(vault, h.op.attacker.address, 400_000n)]).signature;
    onTestFinished(() => {
      h.op.send([h.op.revoke(vault)]);
    });
    h.op.send([h.op.transfer(vault, thief, 150_000n, { authority: h.op.attacker.address })]);
    const { statement, s } = await statementAfterRead(c, h.rpc, vault, from);
    expect(s.delegateApprovals).toEqual([
      expect.objectContaining({
        signature: approveTx,
        delegate: h.op.attacker.address,
        approvedUnits: 400_000n,
      }),
    ]);
    // Before, the Approve's finding stood for the read: nothing said 250,000 may still go.
    expect(s.delegateRead).toMatchObject({
      delegate: h.op.attacker.address,
      delegatedUnits: 250_000n,
    });
    expect(findingCount(s)).toBe(3);
    const csv = statementToCsv(statement);
    expect(csvRows(csv, "vault_delegate_approved")).toEqual([
      expect.objectContaining({ signature: approveTx, amountUnits: "400000" }),
    ]);
    expect(csvRows(csv, "vault_delegate_read")).toEqual([
      expect.objectContaining({ amountUnits: "250000" }),
    ]);
    expect(statementToJson(statement).vaults[0]?.delegateApprovals[0]?.approvedUnits).toBe(
      "400000",
    );

    // Given again for the very amount the read then finds: the Approve says it, once.
    h.op.send([h.op.approve(vault, h.op.attacker.address, 90_000n)]);
    const again = await statementAfterRead(c, h.rpc, vault, from);
    expect(again.s.delegateApprovals.map((d) => d.approvedUnits)).toEqual([400_000n, 90_000n]);
    expect(again.s.delegateRead).toBeNull();
  });
});

describe("a vault handed away and given back while its balance read fails", () => {
  it("is not said another's by the older read once a newer line gives it back", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = periodStart();
    h.op.send([h.op.setAuthority(vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
    let given = false;
    onTestFinished(() => {
      if (!given) h.op.giveBackVault(vault);
    });
    const handed = await statementAfterRead(c, ownerlessNode(h.rpc), vault, from);
    expect(handed.s.ownerRead).toMatchObject({ owner: h.op.attacker.address });
    h.op.giveBackVault(vault);
    given = true;
    // The lines are read (the give-back among them); the balance read fails this round.
    const readFails = new Proxy(h.rpc, {
      get(target, key, receiver) {
        if (key !== "getTokenAccount") return Reflect.get(target, key, receiver);
        return async () => {
          throw new Error("getAccountInfo failed");
        };
      },
    });
    const back = await statementAfterRead(c, readFails, vault, from);
    expect(back.s.ownerChanges.filter((o) => o.finding === "vault_owner_now")).toEqual([]);
    // Before, the failed round's statement still said the attacker owned the vault.
    expect(back.s.ownerRead).toBeNull();
  });
});

describe("a line listed at a made-up slot above the balance read", () => {
  it("does not give the vault back: the line is judged by its transaction's slot", async () => {
    const c = await scenario();
    const { vault } = await c.pinKey(3);
    const from = periodStart();
    // A transaction that shows the escrow authority owning the vault, which the node leaves out
    // (it moves nothing, so no balance says a line is missing), then the handover.
    const shown = h.op.send([h.op.transfer(vault, h.op.attackerAccount(0n), 0n)]);
    h.op.nextSlot();
    h.op.send([h.op.setAuthority(vault, AuthorityType.AccountOwner, h.op.attacker.address)]);
    onTestFinished(() => h.op.giveBackVault(vault));
    await h.finalized();
    const all = await h.rpc.getSignaturesForAddress(vault, {});
    const entry = all.find((e) => e.signature === shown.signature)!;
    const listing = { add: false };
    const node = new Proxy(ownerlessNode(h.rpc), {
      get(target, key, receiver) {
        if (key !== "getSignaturesForAddress") return Reflect.get(target, key, receiver);
        return async (...args: Parameters<RpcPool["getSignaturesForAddress"]>) => {
          const got = (await target.getSignaturesForAddress(...args)).filter(
            (e) => e.signature !== shown.signature,
          );
          // Later, the left-out transaction listed as new, at a slot the chain has not reached.
          return listing.add ? [{ ...entry, slot: entry.slot + 1_000_000_000 }, ...got] : got;
        };
      },
    });
    const handed = await statementAfterRead(c, node, vault, from);
    expect(handed.s.ownerRead).toMatchObject({ owner: h.op.attacker.address });
    listing.add = true;
    const honestOwners = new Proxy(node, {
      get(target, key, receiver) {
        // Its owners served: the line shows the escrow authority's.
        if (key === "getTransaction") return h.rpc.getTransaction.bind(h.rpc);
        return Reflect.get(target, key, receiver);
      },
    });
    let after = await statementAfterRead(c, honestOwners, vault, from);
    // Rounds until the left-out line is read: it is the one that showed the vault given back.
    const ledger = createLedgerStore(c.store);
    for (let i = 0; i < 5; i++) {
      if (await ledger.storedTransaction(shown.signature)) break;
      after = await statementAfterRead(c, honestOwners, vault, from);
    }
    expect(await ledger.storedTransaction(shown.signature)).toBeTruthy();
    // Before, the made-up slot outranked the read's and the statement said nothing.
    expect(after.s.ownerRead).toMatchObject({ owner: h.op.attacker.address });
  });
});
