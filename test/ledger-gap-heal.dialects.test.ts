import { describe, expect, it } from "vitest";
import { createLedgerStore, type LineRead, type ListedSignature } from "../src/store/ledger.js";
import { dialects, useDialectStores } from "./support/dialects.js";
import { fakeSignature } from "./support/job-rows.js";
import { linesOf } from "./support/seed-ledger.js";

/**
 * A transaction a node left out of the listing below lines already read leaves a gap; each sync
 * lists only what is newer than the newest signature held, so it was never listed again. The
 * store puts what a listing between the gap's two lines shows in chain order between them, and
 * the walk compares the lines again.
 */
const NOW = Date.UTC(2026, 11, 11);
const T = Date.UTC(2026, 10, 2) / 1000;
const VAULT = "gapVau1tCred1tsXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
const sig = (name: string) => fakeSignature(`gap-heal:${name}`);

interface Seed {
  name: string;
  slot: number;
  /** Balance before and after; absent: moved none of the vault's money (failed). */
  balance?: [bigint, bigint];
}

const entry = (l: Seed): ListedSignature => ({
  signature: sig(l.name),
  slot: l.slot,
  blockTime: T + l.slot,
  err: l.balance ? null : { InstructionError: [0, "Custom"] },
});

const read = (l: Seed): LineRead => ({
  signature: sig(l.name),
  blockTime: T + l.slot,
  succeeded: l.balance !== undefined,
  pre: l.balance?.[0] ?? null,
  post: l.balance?.[1] ?? null,
  delta: l.balance ? l.balance[1] - l.balance[0] : 0n,
  memo: null,
  memoKind: null,
  memoJobId: null,
  opened: l.name === "a",
});

const a: Seed = { name: "a", slot: 100, balance: [0n, 1_000n] };
const b: Seed = { name: "b", slot: 200, balance: [1_000n, 900n] };
/** Left out of the first listing: the theft, and a failed call after the held one. */
const x: Seed = { name: "x", slot: 250, balance: [900n, 850n] };
const y: Seed = { name: "y", slot: 260 };
const z: Seed = { name: "z", slot: 270 };
const c: Seed = { name: "c", slot: 300, balance: [850n, 800n] };
const d: Seed = { name: "d", slot: 400, balance: [800n, 700n] };
const e: Seed = { name: "e", slot: 500, balance: [700n, 600n] };

describe.each(dialects)("a gap's signatures listed again on %s", (dialect) => {
  const stores = useDialectStores(dialect);

  it("puts the lines left out between the gap's two lines in chain order, and the gap closes", async () => {
    const store = await stores.open();
    const ledger = createLedgerStore(store);
    const first = [d, c, y, b, a];
    const seen = await ledger.cursor(VAULT, NOW);
    expect(await ledger.storePage(VAULT, seen, first.map(entry), true, NOW)).toBe(true);
    await ledger.recordReads(VAULT, [...first].reverse().map(read), [], NOW);
    expect((await ledger.review(VAULT, NOW)).gaps).toBe(1);
    const gaps = await ledger.storedGaps(VAULT, 10);
    expect(gaps).toEqual([{ afterSignature: sig("b"), beforeSignature: sig("c") }]);
    expect(await ledger.gaps(VAULT, 0, T + 10_000)).toHaveLength(1);

    // A sync in progress numbers its next pages from the cursor: nothing is put in meanwhile.
    const listing = [z, y, x].map(entry);
    const outside = entry({ name: "made-up", slot: 900, balance: [0n, 1n] });
    const page = await ledger.cursor(VAULT, NOW);
    await ledger.storePage(VAULT, page, [entry(e)], false, NOW + 1);
    expect(await ledger.healGap(VAULT, gaps[0]!, listing, NOW + 1)).toBe(0);
    await ledger.storePage(VAULT, await ledger.cursor(VAULT, NOW), [], true, NOW + 1);

    // A slot outside the two lines' is no line between them.
    expect(await ledger.healGap(VAULT, gaps[0]!, [outside, ...listing], NOW + 2)).toBe(2);
    expect(await ledger.healGap(VAULT, gaps[0]!, listing, NOW + 3)).toBe(0);
    expect((await linesOf(store, VAULT)).map((l) => l.signature)).toEqual(
      [a, b, x, y, z, c, d, e].map((l) => sig(l.name)),
    );
    expect(await ledger.listedSignatures(VAULT)).toEqual([sig("x"), sig("z"), sig("e")]);
    // Until the theft is read its gap shows; then it is an unexplained debit in its place.
    expect(await ledger.gaps(VAULT, 0, T + 10_000)).toHaveLength(1);
    await ledger.recordReads(VAULT, [x, z, e].map(read), [], NOW + 4);
    expect((await ledger.review(VAULT, NOW + 4)).gaps).toBe(0);
    expect(await ledger.storedGaps(VAULT, 10)).toEqual([]);
    expect(await ledger.gaps(VAULT, 0, T + 10_000)).toEqual([]);
    expect(await ledger.periodSums(VAULT, 0, T + 10_000)).toMatchObject({
      unexplained: { lines: 5, units: -400n },
      deposit: { lines: 1, units: 1_000n },
    });
    // The next sync's lines still come after every healed one.
    const next = await ledger.cursor(VAULT, NOW + 5);
    const f: Seed = { name: "f", slot: 600, balance: [600n, 500n] };
    await ledger.storePage(VAULT, next, [entry(f)], true, NOW + 5);
    expect((await linesOf(store, VAULT)).at(-1)?.signature).toBe(sig("f"));
  });
});
