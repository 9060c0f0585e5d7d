import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLedgerReader, type LedgerRpc } from "../src/ledger/reader.js";
import { buildStatement } from "../src/ledger/statement.js";
import { createLogger } from "../src/log.js";
import { type AdversaryHarness, type Scenario, startAdversaryHarness } from "./support/operator.js";

const log = createLogger({ level: "silent" });

let h: AdversaryHarness;
beforeAll(async () => {
  h = await startAdversaryHarness();
});
afterAll(async () => {
  await h?.close();
});

/** Moves the world's clock past the next whole second and returns that second: a period edge. */
function edge(): number {
  const at = Math.ceil(h.op.now() / 1000) * 1000 + 1000;
  h.op.advanceClock(at - h.op.now() + 50);
  h.op.nextSlot();
  return at;
}

/** Lets everything sent finalize, with the chain's clock past the last period's end. */
async function settle() {
  h.op.advanceClock(5_000);
  h.op.nextSlot();
  await h.finalized();
}

function readerOf(c: Scenario, vault: string, rpc: LedgerRpc = h.rpc) {
  return createLedgerReader({
    store: c.store,
    rpc,
    profile: c.profile,
    log,
    custody: { vaults: [vault], byKey: {} },
  });
}

async function statementOf(c: Scenario, vault: string, from: number, to: number) {
  const s = await buildStatement(
    c.store,
    { from, to, vault },
    { profile: c.profile, graceSeconds: 0 },
  );
  return s;
}

describe("consecutive periods of a vault whose history read has a gap", () => {
  it("opens each period on the chain's balance at its start: the gap's money is its own period's difference", async () => {
    const c = await h.scenario();
    const vault = h.op.vault(2);
    const thief = h.op.attackerAccount(0n);
    const from = edge();
    h.op.send([h.op.transfer(vault, thief, 1_000n)]);
    // A debit the history read never lists (a node that left it out of its listing).
    const missing = h.op.send([h.op.transfer(vault, thief, 12_345n)]).signature;
    h.op.send([h.op.transfer(vault, thief, 2_000n)]);
    const mid = edge();
    const atMid = h.op.balance(vault);
    h.op.send([h.op.transfer(vault, thief, 3_000n)]);
    const to = edge();
    const atEnd = h.op.balance(vault);
    await settle();
    const leavingOut: LedgerRpc = {
      getTransaction: (s) => h.rpc.getTransaction(s),
      getTokenAccount: (a) => h.rpc.getTokenAccount(a),
      getSlot: (x) => h.rpc.getSlot(x),
      getBlockTime: (s) => h.rpc.getBlockTime(s),
      async getSignaturesForAddress(address, o) {
        const page = await h.rpc.getSignaturesForAddress(address, o);
        return page.filter((e) => e.signature !== missing);
      },
    };
    await readerOf(c, vault, leavingOut).syncVault(vault);

    const first = (await statementOf(c, vault, from, mid)).vaults[0]!;
    expect(first.gaps).toEqual([expect.objectContaining({ missingUnits: -12_345n })]);
    expect(first.closingOnChainUnits).toBe(atMid);
    expect(first.differenceUnits).toBe(-12_345n);
    expect(first.complete).toBe(false);

    // The next period opens where the chain stood at its start, the previous closing on chain:
    // its own movements (3,000 out) are the whole of its change, and it closes on the chain.
    const second = (await statementOf(c, vault, mid, to)).vaults[0]!;
    expect(second.gaps).toEqual([]);
    expect(second.openingUnits).toBe(atMid);
    expect(second.unexplainedOutUnits).toBe(3_000n);
    expect(second.closingByLedgerUnits).toBe(atEnd);
    expect(second.closingOnChainUnits).toBe(atEnd);
    expect(second.differenceUnits).toBe(0n);
    expect(second.complete).toBe(true);

    // The two periods at once hold the gap and its difference once.
    const whole = (await statementOf(c, vault, from, to)).vaults[0]!;
    expect(whole.openingUnits).toBe(first.openingUnits);
    expect(whole.differenceUnits).toBe(-12_345n);
  });
});
