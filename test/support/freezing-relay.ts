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
  const target = new URL(url);
  const sockets = new Set<Socket>();
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
    const upstream = createConnection(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    let cutting = false;
    client.on("data", (data: Buffer) => {
      if (dropCommit && /\bcommit\b/i.test(data.toString("latin1"))) {
        dropCommit = false;
        client.destroy();
        upstream.destroy();
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
    cutNextCommitReply: () => {
      cutCommit = true;
    },
    dropNextCommit: () => {
      dropCommit = true;
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
