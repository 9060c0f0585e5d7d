import type { Store } from "../../src/db/client.js";
import type { Logger } from "../../src/log.js";
import {
  createVerifier,
  type Verifier,
  type VerifierDeps,
  type VerifierRpc,
} from "../../src/verify/engine.js";
import { localnetProfile } from "../../src/verify/profiles.js";

/**
 * Verifier timing for tests on the local chain: polls, retries and backfill waits of 20 ms, so
 * a test's jobs reach their verdicts in a few hundred ms instead of the production seconds.
 */
export const quickVerifierOptions = {
  pollIntervalMs: 20,
  errorBackoffMs: 20,
  backfillWaitMs: 20,
} as const;

/**
 * A verifier of the local profile that polls every 5 ms and backs off 20 ms after an error, so
 * a test's run takes milliseconds; `deps` replaces any of it.
 */
export function quickVerifier(
  store: Store,
  rpc: VerifierRpc,
  log: Logger,
  deps: Partial<VerifierDeps> = {},
): Verifier {
  return createVerifier({
    store,
    rpc,
    profile: localnetProfile,
    log,
    ...deps,
    options: { pollIntervalMs: 5, errorBackoffMs: 20, ...deps.options },
  });
}
