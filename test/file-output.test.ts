import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { writeFileWhole } from "../src/file-output.js";

describe("a report written with --out", () => {
  it("replaces the file whole and leaves nothing beside it", () => {
    const dir = mkdtempSync(join(tmpdir(), "file-output-"));
    const path = join(dir, "verify.md");
    writeFileSync(path, "yesterday's summary");
    writeFileWhole(path, "today's summary");
    expect(readFileSync(path, "utf8")).toBe("today's summary");
    expect(readdirSync(dir)).toEqual(["verify.md"]);
  });

  it("keeps what was there when the new one cannot be put in place, and leaves no scrap", () => {
    const dir = mkdtempSync(join(tmpdir(), "file-output-"));
    // A folder where the file should go: the write succeeds, the rename over it fails.
    const path = join(dir, "verify.md");
    mkdirSync(path);
    writeFileSync(join(path, "kept"), "x");
    expect(() => writeFileWhole(path, "today's summary")).toThrow();
    expect(readdirSync(dir)).toEqual(["verify.md"]);
    expect(readdirSync(path)).toEqual(["kept"]);
  });
});
