import { describe, expect, it } from "vitest";
import { type SlotLine, slotChainOrder } from "../src/store/ledger-rules.js";

/** A read line of one slot moving the vault from `pre` to `post`, at `ord`. */
const line = (signature: string, ord: number, pre: bigint, post: bigint): SlotLine => ({
  signature,
  ord,
  read: true,
  preUnits: pre,
  postUnits: post,
  deltaUnits: post - pre,
});

describe("slotChainOrder", () => {
  // Chain order: deposit 100 -> 140, lock 140 -> 130, settlement's remainder 130 -> 134.
  const reversed = [
    line("settle", 7, 130n, 134n),
    line("lock", 8, 140n, 130n),
    line("deposit", 9, 100n, 140n),
  ];
  const chainOrder = ["deposit", "lock", "settle"];

  it("puts a slot's lines in the listed order when their balances chain in it", () => {
    expect(slotChainOrder(100n, 134n, reversed, chainOrder)).toEqual([
      { signature: "deposit", ord: 7 },
      { signature: "lock", ord: 8 },
      { signature: "settle", ord: 9 },
    ]);
  });

  it("moves nothing when the listed order does not chain, or is the held one", () => {
    // The listing's order must meet the balances below and above the slot.
    expect(slotChainOrder(90n, 134n, reversed, chainOrder)).toBeNull();
    expect(slotChainOrder(100n, 135n, reversed, chainOrder)).toBeNull();
    expect(slotChainOrder(100n, 134n, reversed, ["lock", "deposit", "settle"])).toBeNull();
    expect(slotChainOrder(100n, 134n, reversed, ["settle", "lock", "deposit"])).toBeNull();
  });

  it("moves nothing when the listing names other lines than the slot's", () => {
    expect(slotChainOrder(100n, 134n, reversed, ["deposit", "lock"])).toBeNull();
    expect(slotChainOrder(100n, 134n, reversed, ["deposit", "lock", "lock"])).toBeNull();
    expect(slotChainOrder(100n, 134n, reversed, ["deposit", "lock", "payout"])).toBeNull();
  });

  it("moves nothing when a line has no balance to place it by", () => {
    const unread = reversed.map((l) => (l.signature === "lock" ? { ...l, read: false } : l));
    expect(slotChainOrder(100n, 134n, unread, chainOrder)).toBeNull();
    const still = [line("memo", 6, 100n, 100n), ...reversed];
    expect(slotChainOrder(100n, 134n, still, ["memo", ...chainOrder])).toBeNull();
  });
});
