import { createConnection, createServer, type Socket } from "node:net";

/**
 * A TCP relay to the PostgreSQL server at `url` that, frozen, passes nothing either way and
 * leaves every connection open: a server hung, or a network dropping its packets. Thawed, it
 * passes on what it held back, as a server that resumes or a network that heals would. Told to
 * `cutNextCommitReply`, it passes on the next COMMIT a client sends and then ends that
 * connection as the server's answer comes, which it drops: a COMMIT that landed, its answer lost.
 * Told to `dropNextCommit`, it ends the connection instead of passing the COMMIT on; told to
 * `loseNextCommitUnseen`, it ends only the client's side there, the server's left open.
 */
export async function freezingRelay(url: string) {
  /** Where new connections go; null: nowhere, each is ended at once (the server away). */
  let target: URL | null = new URL(url);
  const sockets = new Set<Socket>();
  /** Called as the next COMMIT is cut or dropped. */
  let atCommit: () => void = () => {};
  const held: (() => void)[] = [];
  let frozen = false;
  let cutCommit = false;
  let dropCommit = false;
  let loseCommit = false;
  const pass = (to: Socket) => (data: Buffer) => {
    if (frozen) held.push(() => to.write(data));
    else to.write(data);
  };
  const relay = createServer((client) => {
    if (target === null) {
      client.destroy();
      return;
    }
    const upstream = createConnection(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    let cutting = false;
    client.on("data", (data: Buffer) => {
      if (dropCommit && /\bcommit\b/i.test(data.toString("latin1"))) {
        dropCommit = false;
        client.destroy();
        upstream.destroy();
        atCommit();
        return;
      }
      if (loseCommit && /\bcommit\b/i.test(data.toString("latin1"))) {
        // The server is left with its end open and never hears of the loss.
        loseCommit = false;
        client.removeAllListeners("close");
        client.removeAllListeners("error");
        client.on("error", () => {});
        client.destroy();
        return;
      }
      if (cutCommit && /\bcommit\b/i.test(data.toString("latin1"))) {
        cutCommit = false;
        cutting = true;
      }
      pass(upstream)(data);
    });
    upstream.on("data", (data: Buffer) => {
      if (!cutting) return pass(client)(data);
      client.destroy();
      upstream.destroy();
      atCommit();
    });
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const through = new URL(url);
  through.port = String((relay.address() as { port: number }).port);
  return {
    url: through.href,
    freeze: () => {
      frozen = true;
    },
    /** `then` is called as the answer is cut (before the client hears of it). */
    cutNextCommitReply: (then: () => void = () => {}) => {
      cutCommit = true;
      atCommit = then;
    },
    /** `then` is called as the COMMIT is dropped (before the client hears of it). */
    dropNextCommit: (then: () => void = () => {}) => {
      dropCommit = true;
      atCommit = then;
    },
    /**
     * Ends every connection, and each new one at once, until `to`: the server gone, as in a
     * failover before the new primary takes its address.
     */
    away: () => {
      target = null;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    /** New connections go to the server at `url` (the new primary of a failover). */
    to: (url: string) => {
      target = new URL(url);
    },
    loseNextCommitUnseen: () => {
      loseCommit = true;
    },
    thaw: () => {
      frozen = false;
      for (const write of held.splice(0)) write();
    },
    close: () => {
      for (const s of sockets) s.destroy();
      relay.close();
    },
  };
}
