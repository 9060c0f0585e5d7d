import { describe, expect, it } from "vitest";
import { loggedPath, requestIdOf } from "../src/api/request-id.js";

const admin = "da_admin_ucFAaGHXODpsAM76mehedrjfS35HKb-18du9Vs0BCiE";
const read = "da_read_kV1mck1r-SwgQnes22Xc4O7nsI0eQy69ynuB7dOwat8";

// Seen against a running serve: `GET /audit/da_admin_...` with a read token, and
// `x-request-id: da_admin_...`, wrote the admin token whole to the request log line, while a
// Decentral key in the same places was logged as [redacted].
describe("an access token where a job id or a trace id goes", () => {
  it("is cut from the logged path", () => {
    expect(loggedPath(`/audit/${admin}`, [`Bearer ${read}`])).toBe("/audit/[redacted]");
    expect(loggedPath(`/dashboard/jobs/${read}`, [])).toBe("/dashboard/jobs/[redacted]");
    expect(loggedPath(`/v1/models/${admin}`, ["Bearer dcntrl_live_x"])).toBe(
      "/v1/models/[redacted]",
    );
  });

  it("is cut from the request id", () => {
    expect(requestIdOf(admin)).toBe("[redacted]");
    expect(requestIdOf(`trace-${read}`)).toBe("trace-[redacted]");
  });

  it("leaves ids and paths that only look a little like one", () => {
    expect(requestIdOf("da_read_short")).toBe("da_read_short");
    expect(loggedPath("/audit/job_da0read0x", [])).toBe("/audit/job_da0read0x");
    expect(requestIdOf("4bf92f3577b34da6")).toBe("4bf92f3577b34da6");
  });
});
