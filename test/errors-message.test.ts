import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { messageOf } from "../src/errors.js";
import { createTestStore } from "./support/store.js";

describe("messageOf", () => {
  it("says what the database said, not the statement and its row's data", () => {
    const store = createTestStore();
    let thrown: unknown;
    try {
      store.db.run(sql`SELECT * FROM no_such_table WHERE x = ${"row data"}`);
    } catch (error) {
      thrown = error;
    }
    expect(messageOf(thrown)).toBe("no such table: no_such_table");
    store.close();

    // As the PostgreSQL driver's errors come wrapped (an outage mid-run).
    const wrapped = new Error(
      'Failed query: update "verification_runs" set ...\nparams: timed_out',
      {
        cause: new Error("Connection terminated unexpectedly"),
      },
    );
    expect(messageOf(wrapped)).toBe("Connection terminated unexpectedly");
    // Any other error keeps its own message, cause or not.
    expect(messageOf(new Error("timed out (reading)", { cause: new Error("x") }))).toBe(
      "timed out (reading)",
    );
    expect(messageOf("plain")).toBe("plain");
  });
});
