import { describe, expect, it } from "vitest";
import { creditsToUnits, formatUnits, parseUnits } from "../src/money.js";

describe("money", () => {
  it("formats base units as USDC with six decimals", () => {
    expect(formatUnits(0n)).toBe("0.000000");
    expect(formatUnits(1_234_567n)).toBe("1.234567");
    expect(formatUnits(-80_000n)).toBe("-0.080000");
    expect(formatUnits(2n ** 64n)).toBe("18446744073709.551616");
  });

  it("parses decimals exactly and refuses to round", () => {
    expect(parseUnits("1.5")).toBe(1_500_000n);
    expect(parseUnits("18446744073709.551616")).toBe(2n ** 64n);
    expect(() => parseUnits("0.0000001")).toThrow(RangeError);
    expect(() => parseUnits("-1")).toThrow(RangeError);
  });

  it("converts credits to base units at 10,000 per credit", () => {
    expect(creditsToUnits("9992")).toBe(99_920_000n);
    expect(creditsToUnits("12.5")).toBe(125_000n);
    expect(creditsToUnits(3)).toBe(30_000n);
    expect(creditsToUnits(7n)).toBe(70_000n);
  });
});
