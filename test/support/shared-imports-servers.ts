import { afterAll, beforeAll } from "vitest";
import { listeningServers, listeningServersOnceClosed } from "./listening-servers.js";

/**
 * vitest setupFile of the `shared-imports` project, run before each of its files: a file that
 * leaves a server listening (a local world it did not close, with its RPC and simulator servers
 * and its top-up timer) fails, instead of running on beside every later file of its worker.
 */

let before = 0;
beforeAll(() => {
  before = listeningServers();
});

afterAll(async () => {
  // A server closed in the file's last hook lets go of its handle only in a later turn.
  const left = (await listeningServersOnceClosed()) - before;
  if (left > 0) {
    throw new Error(
      `${left} server(s) this file started still listen: close them (a local world's close()) before the file ends, or list the file as isolated`,
    );
  }
});
