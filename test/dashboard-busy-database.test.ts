import { describe, expect, it, onTestFinished } from "vitest";
import { createApp } from "../src/api/app.js";
import { createToken } from "../src/auth/tokens.js";
import { createLogger } from "../src/log.js";
import { migratedFileStore } from "./support/file-store.js";
import { holdWriteLockSync } from "./support/write-lock-holder.js";

/**
 * The dashboard beside another process that holds SQLite's write lock past `serve`'s wait (an
 * `import` committing a large batch): a sign-in, which writes its session, answered a 500
 * "Something went wrong" page and logged an error, where the JSON API answers 503 with
 * `retry-after`. It is a 503 page now, and the same sign-in passes once the lock is free.
 */

describe("the dashboard while another process holds the write lock", () => {
  it("answers a sign-in 503 with retry-after, not 500, and signs in once the lock is free", async () => {
    const { store, path } = migratedFileStore("dashboard-busy-", 200);
    onTestFinished(() => store.close());
    const app = createApp({ store, log: createLogger({ level: "silent" }) });
    const { token } = await createToken(store, { role: "read", name: "dashboard" });
    const signIn = () =>
      app.request("/dashboard/sign-in", {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          origin: "http://localhost",
        },
        body: new URLSearchParams({ token, next: "/dashboard" }).toString(),
      });
    const holder = holdWriteLockSync(path, 5_000);
    const refused = await signIn();
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(refused.headers.get("content-type")).toContain("text/html");
    expect(await refused.text()).toContain("Try again in a moment");
    holder.release();
    await holder.released;
    expect((await signIn()).status).toBe(303);
  }, 20_000);
});
