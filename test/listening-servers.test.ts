import http from "node:http";
import net from "node:net";
import { describe, expect, it } from "vitest";
import { listeningServers, listeningServersOnceClosed } from "./support/listening-servers.js";
import { closedAfterTest, listen } from "./support/recorder-fixtures.js";

/**
 * The shared-imports guard (test/support/shared-imports-servers.ts) fails a file that leaves a
 * server listening: it must see one left open, and must not see one closed in the file's last
 * hook as still listening.
 */

async function listening(): Promise<net.Server> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

const close = (server: net.Server) => new Promise<void>((resolve) => server.close(() => resolve()));

/** Holds the process's only thread for `ms`, as a GC pause or a busy runner's core does. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

describe("servers left listening at a file's end", () => {
  it("are counted, until they are closed", async () => {
    const before = await listeningServersOnceClosed();
    const server = await listening();
    try {
      expect(await listeningServersOnceClosed()).toBe(before + 1);
    } finally {
      await close(server);
    }
    expect(await listeningServersOnceClosed()).toBe(before);
  });

  // A local world closed in a file's last hook, which ran after a pg client's end() resolved
  // (its socket's close event): the file's guard counted its two servers as still listening
  // whenever the rest of that turn took a millisecond.
  it("do not count a server closed in the loop's close phase, however long the turn goes on", async () => {
    const peer = await listening();
    const server = await listening();
    try {
      const client = net.connect((peer.address() as net.AddressInfo).port, "127.0.0.1");
      await new Promise((resolve) => client.once("connect", resolve));
      const before = listeningServers();
      const counted = await new Promise<Promise<number>>((resolve) => {
        // A socket's close event comes in the close phase, from its handle's close callback.
        client.once("close", () => {
          server.close();
          resolve(listeningServersOnceClosed());
          busy(5);
        });
        client.destroy();
      });
      expect(await counted).toBe(before - 1);
    } finally {
      if (server.listening) await close(server);
      await close(peer);
    }
  });
});

// A case that listened before its `try` (an upstream, then the audit app) left the upstream
// listening when the step between failed, and the worker's next file failed the guard for it.
describe("servers a test hands to closedAfterTest", () => {
  let before = 0;
  const closed: string[] = [];

  it.fails("are closed when the test fails before it could close them", async () => {
    before = await listeningServersOnceClosed();
    const upstream = closedAfterTest(await listen(http.createServer()));
    const app = closedAfterTest(await listen(http.createServer()));
    for (const [name, server] of [
      ["upstream", upstream],
      ["app", app],
    ] as const) {
      const close = server.close;
      server.close = () => close().then(() => void closed.push(name));
    }
    expect(await listeningServersOnceClosed()).toBe(before + 2);
    throw new Error("a step between listening and the case's try failed");
  });

  it("no longer listen after it, the last handed over closed first", async () => {
    expect(await listeningServersOnceClosed()).toBe(before);
    expect(closed).toEqual(["app", "upstream"]);
  });
});
