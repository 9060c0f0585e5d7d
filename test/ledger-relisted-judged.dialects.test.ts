import { describe, expect, it } from "vitest";
import { localKeyNames, localSigner } from "../src/localnet/keys.js";
import { SETTLEMENT_CLOCK_SLACK_SECONDS } from "../src/store/ledger-rules.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import {
  finalizedThrough,
  nightlyOnChain,
  periodEdge,
  vaultReader,
} from "./support/ledger-periods.js";
import { type Scenario, useAdversaryHarness } from "./support/operator.js";
import { execSql } from "./support/store.js";

/**
 * Migration 0033 lists again every line read before payouts hidden by money in of the same
 * transaction were kept, and the next read finds them. A period a nightly run judged already
 * (clean, as it read then) must not keep such a payout to its own statement: the next nightly
 * run judges it, once (`listedLate`), and exits 1.
 */

describe.each(dialects)("%s store", (dialect) => {
  const stores = useDialectStores(dialect);
  const h = useAdversaryHarness({ openStore: () => stores.open() });

  /** The next period's start: the chain's clock is moved on to it, not waited for. */
  const nextSecond = () => periodEdge(h);

  const readerOf = (c: Scenario, vault: string) =>
    vaultReader(h, c, vault, h.rpc, { now: () => h.op.now() });

  /**
   * The nightly run over `vault` alone of [from, the next period edge), on the chain's clock:
   * moved on past the window's end and the 2 s after it the run reads, as for a run started once
   * the chain has finalized them.
   */
  async function nightlyOf(c: Scenario, vault: string, from: number) {
    const to = periodEdge(h);
    await finalizedThrough(h, to + SETTLEMENT_CLOCK_SLACK_SECONDS * 1000);
    return nightlyOnChain(h, c, readerOf(c, vault), () => h.op.now()).nightly({ from, to });
  }

  it("judges a payout that a re-read of a judged period finds with the next nightly run, once", async () => {
    const c = (await h.scenario()).recordOnChainClock();
    const vault = h.op.vault(3);
    const user = localSigner(localKeyNames.user(3));
    const wallet = h.op.createTokenAccount(user.address, h.op.accounts.mint, 1_000_000n);
    const from = nextSecond();
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
    await execSql(
      c.store,
      `UPDATE ledger_lines SET hidden_debit_units = NULL WHERE signature = '${topUp}'`,
    );
    const first = await nightlyOf(c, vault, from);
    expect(first.ledger?.unreceiptedDebits).toEqual([]);
    expect(first.exitCode).toBe(0);

    // The upgrade lists the line again (migration 0033's own statement); the next run reads it.
    await execSql(
      c.store,
      dialect === "sqlite"
        ? "UPDATE `ledger_lines` SET `state` = 'listed' WHERE `state` = 'read' AND `succeeded` = 1"
        : `UPDATE "ledger_lines" SET "state" = 'listed' WHERE "state" = 'read' AND "succeeded" = true`,
    );
    const second = await nightlyOf(c, vault, nextSecond());
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

    const third = await nightlyOf(c, vault, nextSecond());
    expect(third.ledger?.unreceiptedDebits).toEqual([]);
    expect(third.exitCode).toBe(0);
  });
});
