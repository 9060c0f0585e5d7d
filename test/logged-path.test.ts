import { describe, expect, it } from "vitest";
import { loggedPath, requestIdOf } from "../src/api/request-id.js";

const key = "dcntrl_live_7APcI85DUJBp1BYCNJ1ayYuRhwIJ4SMR";

describe("loggedPath", () => {
  it("cuts the caller's own key from a proxied path", () => {
    expect(loggedPath(`/v1/${key}/chat/completions`, [`Bearer ${key}`])).toBe(
      "/v1/[redacted]/chat/completions",
    );
  });

  it("cuts a Decentral key the caller did not authenticate with (an audit read naming a key)", () => {
    // Seen as deployed: `GET /audit/<key>` with a read token logged the key whole.
    const logged = loggedPath(`/audit/${key}`, ["Bearer da_read_xyz"]);
    expect(logged).toBe("/audit/[redacted]");
    expect(logged).not.toContain("7APcI85DUJBp1BYCNJ1ayYuRhwIJ4SMR");
  });

  it("leaves a path without a key as it is", () => {
    expect(loggedPath("/audit/job_8fx2kp3m9qrstvwxyz", ["Bearer da_read_xyz"])).toBe(
      "/audit/job_8fx2kp3m9qrstvwxyz",
    );
  });

  it("cuts a Decentral key sent as the request id, which every line of the request logs", () => {
    expect(requestIdOf(key)).toBe("[redacted]");
    expect(requestIdOf(`trace-${key}`)).toBe("trace-[redacted]");
    expect(requestIdOf("4bf92f3577b34da6")).toBe("4bf92f3577b34da6");
  });
});
