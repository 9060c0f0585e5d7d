import { describe, expect, it } from "vitest";
import { indexAwareUpdate } from "../src/store/prepared.js";

describe("indexAwareUpdate", () => {
  const set = { id: "id", a: "a", b: "b", rest: "rest" };
  function build() {
    const prepared: string[][] = [];
    const ran: string[][] = [];
    const update = indexAwareUpdate(set, ["id", "a", "b"], (kept) => {
      const columns = Object.keys(kept);
      prepared.push(columns);
      return {
        run: () => {
          ran.push(columns);
          return { changes: 1 };
        },
      };
    });
    return { update, prepared, ran };
  }

  it("sets only the indexed columns whose value changes, and every other column", () => {
    const { update, ran } = build();
    const row = { id: 1, a: "x", b: null };
    update.run({ id: 1, a: "x", b: null, rest: 5 }, row);
    update.run({ id: 1, a: "y", b: null, rest: 5 }, row);
    update.run({ id: 1, a: "x", b: "z", rest: 5 }, row);
    expect(ran).toEqual([["rest"], ["a", "rest"], ["b", "rest"]]);
  });

  it("prepares each variant once", () => {
    const { update, prepared, ran } = build();
    const row = { id: 1, a: "x", b: null };
    for (let i = 0; i < 3; i++) {
      update.run({ id: 1, a: "x", b: null }, row);
      update.run({ id: 2, a: "y", b: "z" }, row);
    }
    expect(prepared).toEqual([["rest"], ["id", "a", "b", "rest"]]);
    expect(ran).toHaveLength(6);
  });
});
