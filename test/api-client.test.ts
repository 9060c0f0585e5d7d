import { join } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { createAuditClient } from "../src/api/client.js";
import { createTestApi } from "./support/audit-api-app.js";
import { insertJob } from "./support/job-rows.js";

describe("the typed audit client", () => {
  it("calls the API with the token and returns typed bodies", async () => {
    const api = await createTestApi();
    insertJob(api.store, { jobId: "job_c", verdict: "verified" });
    const client = createAuditClient("http://audit.test", api.tokens.read, {
      fetch: (input, init) => Promise.resolve(api.app.request(input as string, init)),
    });
    const res = await client.audit[":jobId"].$get({ param: { jobId: "job_c" } });
    expect(res.status).toBe(200);
    if (res.status !== 200) return;
    const body = await res.json();
    expect(body.verdict).toBe("verified");
    expect(body.receipt.model).toBe("qwen3-8b");

    const page = await client.jobs.$get({ query: { limit: "10" } });
    if (page.status !== 200) throw new Error(`status ${page.status}`);
    expect((await page.json()).items.map((i) => i.jobId)).toEqual(["job_c"]);
  });

  it("types a report's JSON answer as its body for a TypeScript backend: counts numbers, amounts strings", () => {
    // The compiler reads a small consumer (test/fixtures/audit-client-consumer.ts) as a backend
    // would: `(await res.json()).totals.chargedUnits` must compile, where it was TS2339.
    const root = join(import.meta.dirname, "..");
    const config = ts.readConfigFile(join(root, "tsconfig.json"), ts.sys.readFile);
    const { options } = ts.parseJsonConfigFileContent(config.config, ts.sys, root);
    const consumer = join(root, "test/fixtures/audit-client-consumer.ts");
    const program = ts.createProgram([consumer], { ...options, noEmit: true });
    // The consumer's own diagnostics, not every source file's it imports: those are checked by
    // `tsc --noEmit` of the whole project, and checking them again here took twice as long.
    const file = program.getSourceFile(consumer);
    if (!file) throw new Error("the consumer fixture was not read");
    const diagnostics = [
      ...program.getOptionsDiagnostics(),
      ...program.getGlobalDiagnostics(),
      ...program.getSyntacticDiagnostics(file),
      ...program.getSemanticDiagnostics(file),
    ];
    const errors = diagnostics.map((d) => {
      const where = d.file ? `${d.file.fileName.slice(root.length + 1)}: ` : "";
      return `${where}${ts.flattenDiagnosticMessageText(d.messageText, " ")}`;
    });
    expect(errors).toEqual([]);
    // A whole compiler program in the test's process: 7 s on a quiet 2-core host, past 60 s on
    // one at load 13 beside other suites.
  }, 180_000);
});
