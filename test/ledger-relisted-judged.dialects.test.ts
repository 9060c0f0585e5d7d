import { describe, expect, it } from "vitest";
import type { Store } from "../src/db/client.js";
import { createLedgerReader } from "../src/ledger/reader.js";
import { ledgerWindowCheck } from "../src/ledger/window-check.js";
import { localKeyNames, localSigner } from "../src/localnet/keys.js";
import { createLogger } from "../src/log.js";
import { runNightlyVerification } from "../src/nightly/nightly-run.js";
import { createVerifier } from "../src/verify/engine.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { chainSecondAfter } from "./support/finality.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { quickVerifierOptions } from "./support/quick-verifier.js";

/**
 * Migration 0033 lists again every line read before payouts hidden by money in of the same
 * transaction were kept, and the next read finds them. A period a nightly run judged already
 * (clean, as it read then) must not keep such a payout to its own statement: the next nightly
 * run judges it, once (`listedLate`), and exits 1.
 */
const log = createLogger({ level: "silent" });

/** Runs `sql` on the store's own connection, as a migration would. */
async function exec(store: Store, sql: string) {
  if ("sqlite" in store) store.sqlite.exec(sql);
  else await store.pool.query(sql);
}

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  const nextSecond = () => chainSecondAfter(h.world);

  const readerOf = (c: Scenario, vault: string) =>
    createLedgerReader({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      custody: { vaults: [vault], byKey: {} },
    });

  /** The nightly run of [from, now) over `vault` alone. */
  async function nightlyOf(c: Scenario, vault: string, from: number) {
    await h.finalized();
    const verifier = createVerifier({
      store: c.store,
      rpc: h.rpc,
      profile: c.profile,
      log,
      options: quickVerifierOptions,
    });
    return runNightlyVerification(c.store, verifier, {
      from,
      to: Date.now(),
      timeoutMs: 10_000,
      ledger: ledgerWindowCheck({
        store: c.store,
        reader: readerOf(c, vault),
        profile: c.profile,
        graceSeconds: 0,
      }),
    });
  }

  it("judges a payout that a re-read of a judged period finds with the next nightly run, once", async () => {
    const c = await h.scenario();
    const vault = h.op.vault(3);
    const user = localSigner(localKeyNames.user(3));
    const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
    const from = await nextSecond();
    const topUp = h.op.send(
      [
        h.op.transfer(wallet, vault, 1_000_000n, { authority: user.address }),
        h.op.transfer(vault, h.op.attackerAccount(0n), 300_000n),
      ],
      { extraSigners: [user] },
    ).signature;
    await h.finalized();
    await readerOf(c, vault).syncVault(vault);
    // Read as a version before 0033 read it: a deposit of 700,000, nothing hidden.
    await exec(
      c.store,
      `UPDATE ledger_lines SET hidden_debit_units = NULL WHERE signature = '${topUp}'`,
    );
    const first = await nightlyOf(c, vault, from);
    expect(first.ledger?.unreceiptedDebits).toEqual([]);
    expect(first.exitCode).toBe(0);

    // The upgrade lists the line again (migration 0033's own statement); the next run reads it.
    await exec(
      c.store,
      dialect === "sqlite"
        ? "UPDATE `ledger_lines` SET `state` = 'listed' WHERE `state` = 'read' AND `succeeded` = 1"
        : `UPDATE "ledger_lines" SET "state" = 'listed' WHERE "state" = 'read' AND "succeeded" = true`,
    );
    const second = await nightlyOf(c, vault, await nextSecond());
    expect(second.ledger?.unreceiptedDebits).toEqual([
      expect.objectContaining({
        vault,
        signature: topUp,
        amountUnits: "-300000",
        beforeWindow: true,
        listedLate: true,
      }),
    ]);
    expect(second).toMatchObject({ outcome: "ledger_findings", exitCode: 1 });

    const third = await nightlyOf(c, vault, await nextSecond());
    expect(third.ledger?.unreceiptedDebits).toEqual([]);
    expect(third.exitCode).toBe(0);
  });
});
