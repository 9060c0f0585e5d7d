import { readFileSync } from "node:fs";
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
    // A small consumer (test/fixtures/audit-client-consumer.ts) reads the answers as a backend
    // would: `(await res.json()).totals.chargedUnits` must compile, where it was TS2339. The
    // compiler checks it in `npm test`'s typecheck, which test/run.mjs runs beside the suite
    // (test/npm-test-runner.test.ts): a type the API breaks fails the run, TS2322 on the
    // fixture's line. Compiled again in a test's process, it took 7 s on a quiet 2-core host and
    // past 60 s at load 13.
    const root = join(import.meta.dirname, "..");
    const config = ts.readConfigFile(join(root, "tsconfig.json"), ts.sys.readFile);
    const { fileNames, options } = ts.parseJsonConfigFileContent(config.config, ts.sys, root);
    expect(fileNames).toContain(join(root, "test/fixtures/audit-client-consumer.ts"));
    expect(options.strict).toBe(true);
    const { scripts } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    };
    expect(scripts.test).toBe("node test/run.mjs");
    expect(scripts.typecheck).toBe("tsc --noEmit");
  });
});
