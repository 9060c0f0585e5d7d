import { describe, expect, it } from "vitest";
import { periodOf } from "../src/dashboard/period.js";
import { statementBody } from "../src/dashboard/statement-page.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { buildStatement, statementToCsv, statementToJson } from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import { createLedgerStore } from "../src/store/ledger.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { useAdversaryHarness } from "./support/operator.js";

/**
 * A vault topped up above 2^53 - 1 base units (what the store holds) stays there: the top-up's
 * line and every later one hold a balance the store cannot keep, so none of them is read. The
 * statement of a period holding them must say so, and must not show the balance after the last
 * line read as the chain's closing balance, which the ledger's own closing equals: a difference
 * of 0 that says the ledger holds every movement while the chain holds billions more.
 */

/** 2^53 + 1 base units: what the finance review deposited on the demo's simulator. */
const topUp = 9_007_199_254_740_993n;

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  it("says a statement's lines past a top-up above 2^53 are unread, and why, with no closing balance on chain nor difference", async () => {
    const { op } = h;
    const c = await h.scenario();
    const keyIndex = 3;
    const vault = op.plan({ keyIndex }).vault;
    for (let i = 0; i < 3; i++) {
      const plan = op.plan({ keyIndex });
      c.record(plan, op.honestJob(plan), { creditsRemainingUnits: null });
    }
    op.fund(vault, topUp);
    for (let i = 0; i < 2; i++) {
      const plan = op.plan({ keyIndex });
      c.record(plan, op.honestJob(plan), { creditsRemainingUnits: null });
    }
    await c.flush();
    await h.finalized();

    const reader = createLedgerReader({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log: createLogger({ level: "silent" }),
      custody: { vaults: [vault], byKey: {} },
    });
    const synced = await reader.syncVault(vault);
    // The top-up, then the lock and the return of each of the two later jobs.
    expect(synced.pending).toBe(5);

    const from = Date.now() - 3_600_000;
    const statement = await buildStatement(
      c.store,
      { from, to: Date.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    const own = statement.vaults[0]!;
    expect(own.complete).toBe(false);
    // The three jobs before the top-up are read: the ledger's own closing is still shown.
    expect(own.counts.locks).toBe(3);
    expect(own.closingByLedgerUnits).not.toBeNull();
    // The chain's closing balance is not the one before the top-up, and no difference is 0.
    expect(own.closingOnChainUnits).toBeNull();
    expect(own.closingOnChainSource).toBeNull();
    expect(own.differenceUnits).toBeNull();
    expect(own.unread?.lines).toBe(5);
    expect(own.unread?.why).toMatch(
      /not read: its amount \d+ is beyond 9007199254740991, the most the store holds \(and 4 later lines like it\)/,
    );

    const json = statementToJson(statement).vaults[0]!;
    expect(json.differenceUnits).toBeNull();
    expect(json.closingOnChainUnits).toBeNull();
    expect(json.unread).toEqual({ lines: 5, why: own.unread?.why });

    const csv = statementToCsv(statement).split("\r\n");
    const header = csv[0]!.split(",");
    const vaultRow = csv.find((l) => l.startsWith("vault,"))!.split(",");
    expect(vaultRow[header.indexOf("differenceUnits")]).toBe("");
    expect(vaultRow[header.indexOf("closingOnChainUnits")]).toBe("");
    const unreadRow = csv.find((l) => l.startsWith("unread_transactions,"));
    expect(unreadRow).toContain(
      "5 transactions up to the period's end not read, so the closing balance on chain is not known",
    );
    expect(unreadRow).toContain("beyond 9007199254740991, the most the store holds");

    const page = String(
      await statementBody(periodOf({ period: "day" }, Date.now()), statement),
    ).replace(/\s+/g, " ");
    expect(page).toContain("5 transactions of this vault could not be read: line ");
    expect(page).toContain("beyond 9007199254740991, the most the store holds");
    expect(page).not.toMatch(/Difference<\/th><td class="num">0\.000000/);
    expect(page).toMatch(/Closing balance on chain<\/th><td class="num">not known/);
    // The page's headline does not say "no finding" while lines that may hold one are unread.
    expect(page).not.toContain("No finding in this period.");
    expect(page).toContain("1 vault has transactions not read yet: what they hold is not known.");

    // A sync that failed since names its endpoint: what the statement says keeps no key of it.
    await createLedgerStore(c.store).setError(
      vault,
      "getTransaction: https://rpc.example.com/v2/s3cr3t-key?api-key=s3cr3t timed out",
      Date.now(),
    );
    const later = await buildStatement(
      c.store,
      { from, to: Date.now() + 1_000, vault },
      { profile: c.profile, graceSeconds: 0 },
    );
    expect(later.vaults[0]!.unread?.why).toContain("https://rpc.example.com");
    expect(later.vaults[0]!.unread?.why).not.toContain("s3cr3t");
  });
});
