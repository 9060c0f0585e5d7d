import { describe, expect, it } from "vitest";
import {
  duplicateMembers,
  parseJsonNotingDuplicates,
} from "../src/recorder/json-duplicate-members.js";

describe("parseJsonNotingDuplicates", () => {
  it("parses as JSON.parse does and notes every value of a member named twice", () => {
    const text = '[{"a":1,"b":{"c":"x","\\u0063":"y, z"},"a":[1,{"a":2}]},{"a":1}]';
    const value = parseJsonNotingDuplicates(text) as Record<string, unknown>[];
    expect(value).toEqual(JSON.parse(text));
    const first = value[0] as Record<string, unknown>;
    const values = (v: object) =>
      [...duplicateMembers(v)].map(([name, given]) => [name, given.map((g) => g.value)]);
    expect(values(first)).toEqual([["a", [1, [1, { a: 2 }]]]]);
    expect(values(first.b as object)).toEqual([["c", ["x", "y, z"]]]);
    expect(duplicateMembers(value[1] as object).size).toBe(0);
  });

  it("says nothing of a member named twice with one value, and throws on text that is no JSON", () => {
    expect(
      duplicateMembers(parseJsonNotingDuplicates('{"a":{"b":1},"a":{"b":1}}') as object).size,
    ).toBe(0);
    expect(() => parseJsonNotingDuplicates('{"a":1,')).toThrow(SyntaxError);
  });

  it("reads nesting as deep as JSON.parse takes without running out of stack", () => {
    const depth = 200_000;
    const text = `{"a":${"[".repeat(depth)}{"k":1,"k":2}${"]".repeat(depth)},"a":0}`;
    const value = parseJsonNotingDuplicates(text) as object;
    expect([...duplicateMembers(value)].map(([name]) => name)).toEqual(["a"]);
  });
});
