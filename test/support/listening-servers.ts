/**
 * Counting the servers a process listens with, for the shared-imports project's guard
 * (test/support/shared-imports-servers.ts): a file that leaves one listening fails.
 */

/** Servers listening in this process now (each node:net server holds one such handle). */
export function listeningServers(): number {
  return process.getActiveResourcesInfo().filter((kind) => kind === "TCPServerWrap").length;
}

const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * The servers still listening once every server closed so far has let go of its handle.
 * `server.close()` (and its callback) comes before the loop frees the handle, in its next close
 * phase: after a close made in a close phase itself, the next turn's. A file's last hooks run
 * there often: a pg client's `end()`, a socket's "close", resolve in a close callback, and every
 * hook after them in the same turn. A 1 ms timer set then fires before that next close phase
 * whenever the rest of the turn takes a millisecond (a GC pause, a runner's busy core), and
 * counted closed servers as listening: "2 server(s) ... still listen" for a local world closed
 * in the file's last hook. Two checks phases later a close phase has run after this point,
 * wherever in the loop it is.
 */
export async function listeningServersOnceClosed(): Promise<number> {
  await immediate();
  await immediate();
  return listeningServers();
}
