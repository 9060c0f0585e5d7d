import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { longFileSeconds } from "./support/longest-first-sequencer.js";

describe("the order test files start in", () => {
  it("names only test files that exist: a renamed long file would start in any order", () => {
    const root = join(import.meta.dirname, "..");
    const missing = Object.keys(longFileSeconds).filter((file) => !existsSync(join(root, file)));
    expect(missing).toEqual([]);
  });
});
