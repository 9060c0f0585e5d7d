import { describe, expect, it } from "vitest";
import { ownerIsDead, ownerName, thisHost } from "../src/host-identity.js";

describe.runIf(process.platform === "linux")("owner names", () => {
  it("tell this process from an earlier one that had its pid (a restart as pid 1 of a container)", () => {
    const mine = ownerName("proxy");
    expect(mine).toMatch(new RegExp(`^${literal(thisHost())}/${process.pid}\\.\\d+/proxy$`));
    expect(ownerIsDead(mine)).toBe(false);
    // The same pid, started at another time: the process that wrote it is gone.
    const earlier = mine.replace(/\.(\d+)\//, (_, start: string) => `.${Number(start) - 1}/`);
    expect(ownerIsDead(earlier)).toBe(true);
    // A pid no process has, with or without its start.
    expect(ownerIsDead(`${thisHost()}/4194303.5/proxy`)).toBe(true);
    expect(ownerIsDead(`${thisHost()}/4194303/proxy`)).toBe(true);
    // Another host's (or another boot's) owner is never judged from here.
    expect(ownerIsDead(`elsewhere@pid:[4026531836]~00000000/4194303.5/proxy`)).toBe(false);
    expect(ownerIsDead(earlier.replace(thisHost(), `${thisHost()}x`))).toBe(false);
  });
});

function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
