import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { defaultDemoOptions, demoOptionsFromFlags } from "../src/demo/options.js";
import { runDemo } from "../src/demo/run-demo.js";
import { chainFaults } from "../src/localnet/decentral-jobs.js";
import { createLogger } from "../src/log.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDb(): string {
  const dir = mkdtempSync(join(tmpdir(), "demo-once-"));
  dirs.push(dir);
  return join(dir, "demo.db");
}

async function demo(overrides: Partial<typeof defaultDemoOptions>) {
  const lines: string[] = [];
  const code = await runDemo(
    {
      ...defaultDemoOptions,
      once: true,
      port: 0,
      db: tempDb(),
      // 10 ms slots: a never-landing signature is called dropped after 3 s instead of 7.5 s.
      slotMs: 10,
      verifyPollMs: 100,
      ...overrides,
    },
    { out: (line) => lines.push(line), log: createLogger({ level: "silent" }) },
  );
  return { code, lines, text: lines.join("\n") };
}

describe("decentral-audit demo --once", () => {
  it("exits 0 after printing the reconciliation, every injected fault as a discrepancy, and a passed self-check", async () => {
    const { code, lines, text } = await demo({ jobs: 16 });

    expect(text).toContain("Reconciliation of this run, by model (USDC)");
    const total = lines.find((l) => l.startsWith("total "));
    expect(total).toBeDefined();
    // Every amount in the table is USDC with six decimals.
    expect(total!.split(/\s+/).slice(4)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^\d+\.\d{6}$/)]),
    );

    // One finding per chain fault, each flagged with its verdict; no honest job among them.
    const findings = lines.filter((l) => /^ {2}job_\w+ {2}/.test(l));
    const injected = findings.map((l) => /injected: (\S+)/.exec(l)?.[1]);
    expect([...injected].sort()).toEqual([...chainFaults].sort());
    for (const line of findings) {
      const fault = /injected: (\S+)/.exec(line)?.[1];
      expect({ fault, verdict: line.split(/\s+/)[2] }).toEqual({
        fault,
        verdict: fault === "phantom-signature" ? "dropped" : "discrepancy",
      });
    }
    expect(text).toMatch(/x settlement\.split: /);
    expect(text).toMatch(/x signatures\.unique: /);

    expect(text).toContain("Self-check against the simulator's ground truth");
    expect(text).not.toContain("FAIL");
    expect(text).toContain(
      `${chainFaults.length} of ${chainFaults.length} injected faults flagged`,
    );
    expect(code).toBe(0);
  });

  it("refuses a job count or port out of range, naming the flag", () => {
    expect(() => demoOptionsFromFlags({ jobs: "5" })).toThrow(/--jobs: expected an integer/);
    expect(() => demoOptionsFromFlags({ jobs: "ten" })).toThrow(/--jobs/);
    expect(() => demoOptionsFromFlags({ port: "70000" })).toThrow(/--port/);
    expect(demoOptionsFromFlags({ once: true, jobs: "40", port: "0" })).toMatchObject({
      once: true,
      jobs: 40,
      port: 0,
    });
  });
});
