import http from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A JSON-RPC relay to the node at `target` (a local world's) that passes every request on, but
 * holds each `getSignatureStatuses` request while it is held (from the start when `held`), as a
 * node stuck on its status index: a verify run in its round then keeps its jobs' leases. It counts
 * the status requests it was asked.
 */
export function holdingRelay(target: string, options: { held?: boolean } = {}) {
  let held = options.held ?? false;
  const waiting: (() => void)[] = [];
  let statusAsks = 0;
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    if (body.toString("utf8").includes("getSignatureStatuses")) {
      statusAsks++;
      if (held) await new Promise<void>((resolve) => waiting.push(resolve));
    }
    const answer = await fetch(target, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    res.writeHead(answer.status, { "content-type": "application/json" });
    res.end(Buffer.from(await answer.arrayBuffer()));
  });
  return {
    /** Listens on a free port of 127.0.0.1; resolves with the relay's URL. */
    listen: () =>
      new Promise<string>((resolve) =>
        server.listen(0, "127.0.0.1", () =>
          resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
        ),
      ),
    hold: () => {
      held = true;
    },
    /** Passes on the status requests held so far, and every one after. */
    release: () => {
      held = false;
      for (const go of waiting.splice(0)) go();
    },
    /** Status requests held now. */
    waiting: () => waiting.length,
    /** Status requests asked since the relay started, held or not. */
    statusAsks: () => statusAsks,
    /** Ends the connections its clients left open, and stops listening. */
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
