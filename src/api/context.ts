import type { Logger } from "../log.js";

/**
 * What every handler finds on the request context: its id and its child logger. A leaf
 * module, so route files depend on it and never on the app that mounts them.
 */
export interface AppEnv {
  Variables: { requestId: string; log: Logger };
}
