import { createLedgerReader, type LedgerRpc } from "../../src/ledger/reader.js";
import { createLogger } from "../../src/log.js";
import type { AdversaryHarness, Scenario } from "./operator.js";

/** Moves the world's clock past the next whole second and returns that second: a period edge. */
export function periodEdge(h: AdversaryHarness): number {
  const at = Math.ceil(h.op.now() / 1000) * 1000 + 1000;
  h.op.advanceClock(at - h.op.now() + 50);
  h.op.nextSlot();
  return at;
}

/** The reader of `vault`'s history alone, the only credit vault configured, through `rpc`. */
export function vaultReader(
  h: AdversaryHarness,
  c: Scenario,
  vault: string,
  rpc: LedgerRpc = h.rpc,
) {
  return createLedgerReader({
    store: c.store,
    rpc,
    profile: c.profile,
    log: createLogger({ level: "silent" }),
    custody: { vaults: [vault], byKey: {} },
  });
}

/** The local chain's node, whose listings of signatures leave `missing` out. */
export function listingWithout(h: AdversaryHarness, missing: string): LedgerRpc {
  return {
    getTransaction: (s) => h.rpc.getTransaction(s),
    getTokenAccount: (a) => h.rpc.getTokenAccount(a),
    getSlot: (x) => h.rpc.getSlot(x),
    getBlockTime: (s) => h.rpc.getBlockTime(s),
    async getSignaturesForAddress(address, o) {
      const page = await h.rpc.getSignaturesForAddress(address, o);
      return page.filter((e) => e.signature !== missing);
    },
  };
}
