import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { listeningServers, listeningServersOnceClosed } from "./support/listening-servers.js";
import { type AdversaryHarness, startAdversaryHarness } from "./support/operator.js";
import { startedLife } from "./support/started-life.js";

/**
 * A runner gives up on a start hook at its timeout and runs the end hooks at once, while the
 * harness goes on starting. Its local world then listened after the end hook had found nothing
 * to close, and a later file of the worker failed the servers' check.
 */
describe("adversary harness life", () => {
  it("closes a harness whose start outlasted its start hook, once it has started", async () => {
    const before = listeningServers();
    let starting: Promise<AdversaryHarness> | undefined;
    const life = startedLife(() => {
      starting = sleep(200).then(() => startAdversaryHarness());
      return starting;
    });
    // What the runner does with a hook past its timeout: stops waiting for it.
    const hook = life.start();
    const outlasted = await Promise.race([hook.then(() => false), sleep(50).then(() => true)]);
    expect(outlasted).toBe(true);

    await life.close();
    // The start the runner gave up on has ended by now; its servers are not left listening.
    const started = await starting!;
    expect(started.world.rpcUrl).toMatch(/^http:/);
    expect((await listeningServersOnceClosed()) - before).toBe(0);
  });

  it("ends without a harness to close when its start failed", async () => {
    const life = startedLife(() => Promise.reject(new Error("no chain")));
    await expect(life.start()).rejects.toThrow("no chain");
    await expect(life.close()).resolves.toBeUndefined();
  });

  it("closes nothing when its start never ran", async () => {
    await expect(startedLife(startAdversaryHarness).close()).resolves.toBeUndefined();
  });
});
