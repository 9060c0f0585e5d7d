import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { demoLogFileFor } from "../src/demo/command.js";
import { defaultDemoOptions } from "../src/demo/options.js";

// The README said nothing of where `demo` writes the service's log, which never reaches the
// terminal: whoever looked for why a job ended as it did found no log.
describe("the demo's log", () => {
  it("is demo.log beside the database file, in ./data for PostgreSQL, as the README says", () => {
    expect(demoLogFileFor(defaultDemoOptions.db)).toBe(join("data", "demo.log"));
    expect(demoLogFileFor("/tmp/runs/a.db")).toBe("/tmp/runs/demo.log");
    expect(demoLogFileFor("postgres://u@localhost/demo")).toBe(join("data", "demo.log"));
    const readme = readFileSync("README.md", "utf8");
    const about = readme.slice(readme.indexOf("The demo starts a local Solana chain"));
    const paragraph = about.slice(0, about.indexOf("\n\n")).replace(/\s+/g, " ");
    expect(paragraph).toContain("to `demo.log` beside the database file");
    expect(paragraph).toContain("`./data/demo.log` by default");
  });
});
