import { type ServerType, serve } from "@hono/node-server";
import { createApp } from "./api/app.js";
import type { Config } from "./config.js";
import { openStore, type Store } from "./db/client.js";
import { migrateStore } from "./db/migrate.js";
import { createLogger, type Logger } from "./log.js";

/** A running service; `close()` stops taking requests, drains work and closes the store. */
export interface Service {
  url: string;
  store: Store;
  log: Logger;
  close(): Promise<void>;
}

/** Composes config -> db -> app -> HTTP server. */
export async function startService(
  config: Config,
  log = createLogger({ level: config.LOG_LEVEL }),
): Promise<Service> {
  const store = openStore(config.DATABASE_URL);
  migrateStore(store);
  const app = createApp({ store, log });
  const server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, port: config.PORT, hostname: config.HOST }, () =>
      resolve(s),
    );
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : config.PORT;
  const url = `http://${config.HOST}:${port}`;
  log.info({ url }, "decentral-audit listening");
  return {
    url,
    store,
    log,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      store.close();
    },
  };
}
