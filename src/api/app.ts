import { randomUUID } from "node:crypto";
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Store } from "../db/client.js";
import type { Logger } from "../log.js";
import { errorBody, handleError } from "./error-handler.js";

/** Everything the HTTP app needs, injected so tests build their own. */
export interface AppDeps {
  store: Store;
  log: Logger;
  /** Clock, injectable for tests. */
  now?: () => number;
}

export interface AppEnv {
  Variables: { requestId: string; log: Logger };
}

/** Builds the Hono app: request ids, one log line per request, one error shape. */
export function createApp(deps: AppDeps) {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) {
        const issue = result.error.issues[0];
        const field = issue?.path.join(".") || undefined;
        return c.json(
          errorBody(
            c,
            "validation_failed",
            issue ? `${field ?? "input"}: ${issue.message}` : "invalid input",
            { field },
          ),
          400,
        );
      }
    },
  });

  app.use("*", async (c, next) => {
    const requestId = c.req.header("x-request-id") ?? randomUUID();
    const log = deps.log.child({ requestId });
    c.set("requestId", requestId);
    c.set("log", log);
    c.header("x-request-id", requestId);
    const started = performance.now();
    await next();
    log.info(
      {
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        ms: Math.round((performance.now() - started) * 100) / 100,
      },
      "request",
    );
  });

  app.onError(handleError);
  app.notFound((c) =>
    c.json(errorBody(c, "not_found", `no route ${c.req.method} ${c.req.path}`), 404),
  );

  app.get("/healthz", (c) => c.json({ ok: true }));

  return app;
}

export type App = ReturnType<typeof createApp>;
