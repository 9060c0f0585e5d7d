import { describe, expect, it } from "vitest";
import { creditsToUnits, creditsToUnitsOrNull, formatUnits, parseUnits } from "../src/money.js";

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

describe("credits sent as a JSON number", () => {
  it("reads a float's error as the whole units it names, and nothing farther", () => {
    // 0.1 + 0.2 is 0.30000000000000004: 3,000 units to within the float's error.
    expect(creditsToUnitsOrNull(0.1 + 0.2)).toBe(3_000n);
    expect(creditsToUnitsOrNull(12.8 - 0.01)).toBe(127_900n);
    // The error grows with the number: a balance of a million credits and more, too.
    expect(creditsToUnitsOrNull(951884.8638 - 0.0001)).toBe(9_518_848_637n);
    expect(creditsToUnitsOrNull(12345678.1234 - 0.0001)).toBe(123_456_781_233n);
    expect(creditsToUnitsOrNull(12345678.12335)).toBeNull();
    // A fifth decimal is no float error; a string is read exactly, as written.
    expect(creditsToUnitsOrNull(99.00001)).toBeNull();
    expect(creditsToUnitsOrNull("0.30000000000000004")).toBeNull();
  });

  // Multiplied in floating point, 368946350270.077 credits were read as ...0771 units: one unit
  // off in about 2% of 12-digit balances whose number prints exactly as sent.
  it("reads a number that prints as a credit amount exactly as it prints", () => {
    expect(creditsToUnitsOrNull(368946350270.077)).toBe(3_689_463_502_700_770n);
    let wrong = 0;
    for (let whole = 100_000_000_000; whole < 100_000_000_000 + 2_000 * 7919; whole += 7919) {
      for (const frac of ["0", "1", "07", "077", "5001", "9999"]) {
        const text = `${whole}.${frac}`;
        if (String(Number(text)) !== text) continue;
        const units = BigInt(whole) * 10_000n + BigInt(frac.padEnd(4, "0"));
        if (creditsToUnitsOrNull(Number(text)) !== units) wrong++;
      }
    }
    expect(wrong).toBe(0);
  });
});
