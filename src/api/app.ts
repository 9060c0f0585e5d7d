import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { METHOD_NAME_ALL } from "hono/router";
import { TrieRouter } from "hono/router/trie-router";
import { dashboardRoutes } from "../dashboard/routes.js";
import type { Store } from "../db/client.js";
import { AppError } from "../errors.js";
import type { Logger } from "../log.js";
import { createReadGate, type ReadGate } from "../read-gate.js";
import type { RecordingProxy } from "../recorder/proxy.js";
import type { ReceiptWriter } from "../recorder/receipt-writer.js";
import { credentialsOf } from "../recorder/without-key.js";
import type { ExplorerCluster } from "../reports/audit-record.js";
import { auditApi } from "./audit-api.js";
import type { Reverifier } from "./audit-routes.js";
import { AUDIT_TOKEN_HEADER, BEARER_SCHEME, requireRole } from "./auth.js";
import type { AppEnv } from "./context.js";
import { errorBody, handleError } from "./error-handler.js";
import { ingestRoutes } from "./ingest-routes.js";
import { type AppMetrics, createMetrics } from "./metrics.js";
import { authErrors, ErrorSchema, noQueryParameters, noRequestBody } from "./openapi-schemas.js";
import type { ReadinessProbes } from "./ops-routes.js";
import { proxyRoutes } from "./proxy-routes.js";
import {
  notUtf8Message,
  notUtf8PathMessage,
  notUtf8QueryParameter,
  pathIsUtf8,
  unnamedMessage,
  unnamedQueryParameter,
} from "./query-utf8.js";
import { readersBusyMessage, readTurn } from "./read-turn.js";
import { loggedPath, requestIdOf } from "./request-id.js";
import { createRouter } from "./router.js";
import { type StatementRoutesDeps, statementRoutes } from "./statement-routes.js";

/** Everything the HTTP app needs, injected so tests build their own. */
export interface AppDeps {
  store: Store;
  log: Logger;
  /** Clock, injectable for tests. */
  now?: () => number;
  /** The recording proxy behind `/v1/*`; without it `/v1/*` is not served. */
  proxy?: RecordingProxy;
  /**
   * Group-commit writer of `POST /jobs` (off the event loop's busy waits). Default: the
   * proxy's; without either, receipts are written directly.
   */
  receiptWriter?: ReceiptWriter;
  /** Explorer links of the audit record; default Solana mainnet. */
  explorer?: ExplorerCluster;
  /** Queues re-verifications (`POST /jobs/{jobId}/reverify`); without it that route answers 409. */
  verifier?: Reverifier;
  /** Probes of `/readyz`. */
  readiness?: ReadinessProbes;
  /** Prometheus metrics, shared with the proxy; default: a fresh registry over `store`. */
  metrics?: AppMetrics;
  /** Also require an `ingest` access token in `x-audit-token` on `/v1/*` (PROXY_REQUIRE_TOKEN). */
  proxyRequireToken?: boolean;
  /** The credit vaults' statement (`/reports/statement`); without it that route is not served. */
  statement?: Omit<StatementRoutesDeps, "store" | "now">;
  /**
   * Where audit records, reports, listings and dashboard pages take turns (src/read-gate.ts).
   * Default: one of its own, a reader at a time, `DEFAULT_READ_QUEUE` waiting.
   */
  readGate?: ReadGate;
}

export type { AppEnv } from "./context.js";

/** The first query parameter named by a failed validation that the request gave more than once. */
function repeatedQueryParameter(
  c: Context,
  issues: readonly { path: readonly PropertyKey[] }[],
): string | undefined {
  const queries = c.req.queries();
  return issues
    .map((issue) => issue.path[0])
    .find((name): name is string => typeof name === "string" && (queries[name]?.length ?? 0) > 1);
}

/** Builds the Hono app: request ids, one log line per request, one error shape. */
export function createApp(deps: AppDeps) {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result, c) => {
      if (!result.success) {
        // `groupBy=model&groupBy=day` is read as an array, which every query schema refuses as
        // a wrong value ("expected one of day|model|..."): say what is wrong with it instead.
        const repeated = repeatedQueryParameter(c, result.error.issues);
        if (repeated !== undefined) {
          return c.json(
            errorBody(c, "validation_failed", `${repeated}: given more than once; give it once`, {
              field: repeated,
            }),
            400,
          );
        }
        const issue = result.error.issues[0];
        // A key the schema does not take is named by itself: its issue's path is its object's.
        const path =
          issue?.code === "unrecognized_keys"
            ? [...issue.path, ...issue.keys.slice(0, 1)]
            : issue?.path;
        const field = path?.join(".") || undefined;
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
    const requestId = requestIdOf(c.req.header("x-request-id"));
    const log = deps.log.child({ requestId });
    c.set("requestId", requestId);
    c.set("log", log);
    c.header("x-request-id", requestId);
    const started = performance.now();
    await next();
    log.info(
      {
        method: c.req.method,
        // A key the caller put in a proxied path is not written out.
        path: loggedPath(
          c.req.path,
          credentialsOf((name) => c.req.header(name)),
        ),
        status: c.res.status,
        ms: Math.round((performance.now() - started) * 100) / 100,
      },
      "request",
    );
  });

  // No route takes a NUL byte: PostgreSQL refuses it in any text, where SQLite took it (the
  // same request must not be a 500 on one and a 404 on the other).
  app.use("*", async (c, next) => {
    if (/%00/.test(c.req.url)) {
      throw new AppError("bad_request", "the URL holds a NUL byte (%00)", { field: "url" });
    }
    await next();
  });

  // A path or query byte that is not UTF-8 (`?model=%FF`) was kept as the characters sent and matched
  // literally. The dashboard refuses it on its own page; the proxy forwards its URL as it came.
  app.use("*", async (c, next) => {
    if (!/^\/(dashboard|v1)(\/|$)/.test(c.req.path)) {
      if (!pathIsUtf8(c.req.url)) {
        throw new AppError("bad_request", notUtf8PathMessage, { field: "path" });
      }
      const found = notUtf8QueryParameter(c.req.url);
      if (found) throw new AppError("bad_request", notUtf8Message(found), { field: found.name });
      const unnamed = unnamedQueryParameter(c.req.url);
      if (unnamed !== undefined) {
        throw new AppError("bad_request", unnamedMessage(unnamed), { field: "query" });
      }
    }
    await next();
  });

  // Readers take turns, each in a turn of the event loop of its own, a bounded number waiting:
  // a burst of them held the loop for seconds, the proxy and the leader's lease with it.
  // Dashboard pages are answered by the dashboard, with a page (below). A reader's token is
  // judged before it takes a place: a 401 is no reason to come back, nor to wait.
  const readGate = deps.readGate ?? createReadGate();
  const readerToken = requireRole(deps.store, "read", deps.now ? { now: deps.now } : {});
  app.use(
    "*",
    readTurn(
      readGate,
      "api",
      (c: Context<AppEnv>) => c.json(errorBody(c, "busy", readersBusyMessage), 503),
      async (c: Context<AppEnv>) => (await readerToken(c, async () => {})) ?? undefined,
    ),
  );

  app.onError(handleError);
  // Built once, when first needed: every route is registered by then.
  let routeMethodsOf: ((path: string) => string[]) | undefined;
  const methodsOf = (path: string) => {
    routeMethodsOf ??= routeMethods(app.routes);
    return routeMethodsOf(path);
  };
  app.notFound((c) => {
    const allowed = methodsOf(c.req.path);
    if (allowed.length > 0) {
      // The path exists: "no route" would send its caller looking for a wrong URL.
      c.header("allow", allowed.join(", "));
      return c.json(
        errorBody(
          c,
          "method_not_allowed",
          `${c.req.method} is not answered on ${c.req.path}; it takes ${allowed.join(", ")}`,
        ),
        405,
      );
    }
    // `/jobs/` for `/jobs`: said, with the route, rather than left for its caller to spot.
    const bare = c.req.path.replace(/\/+$/, "");
    if (bare !== c.req.path && bare !== "" && methodsOf(bare).includes(c.req.method)) {
      const message = `path: no route ${c.req.method} ${c.req.path}; the route is ${bare}, without the trailing slash`;
      return c.json(errorBody(c, "not_found", message, { field: "path" }), 404);
    }
    return c.json(errorBody(c, "not_found", `no route ${c.req.method} ${c.req.path}`), 404);
  });

  app.route(
    "/",
    createRouter({ public: true }).openapi(healthz, (c) => c.json({ ok: true as const }, 200)),
  );

  // Every route but /healthz needs an access token: each sub-app declares its role once
  // (createRouter). The proxy is authenticated upstream by the caller's Decentral key in
  // Authorization, so its optional token travels in x-audit-token.
  if (deps.proxyRequireToken) {
    app.use("/v1/*", requireRole(deps.store, "ingest", { source: AUDIT_TOKEN_HEADER }));
  }
  // Audit records, reports and listings read the store: a cache must not serve a verdict or a
  // figure from before the verifier's last word. Readiness and metrics are one moment's state,
  // the API description the deployed version's.
  app.use("*", async (c, next) => {
    if (/^\/(audit|reports|jobs|readyz|metrics|openapi\.json)(\/|$)/.test(c.req.path)) {
      c.header("cache-control", "no-store");
    }
    await next();
  });
  const metrics =
    deps.metrics ??
    createMetrics({ store: deps.store, now: deps.now, readers: () => readGate.stats() });
  app.route(
    "/",
    auditApi({
      store: deps.store,
      now: deps.now ?? Date.now,
      explorer: deps.explorer ?? { cluster: "mainnet-beta" },
      metrics,
      verifier: deps.verifier,
      readiness: deps.readiness,
    }),
  );
  if (deps.statement) {
    app.route(
      "/",
      statementRoutes({ store: deps.store, now: deps.now ?? Date.now, ...deps.statement }),
    );
  }
  app.openAPIRegistry.registerComponent("securitySchemes", BEARER_SCHEME, {
    type: "http",
    scheme: "bearer",
    description: "An access token (`da_...`) created with `decentral-audit tokens create`.",
  });
  app.use("/openapi.json", requireRole(deps.store, "read"), noQueryParameters, noRequestBody);
  // Served by doc31 below, outside the registry: registered here, so the document names itself.
  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/openapi.json",
    tags: ["operations"],
    summary: "This OpenAPI 3.1 document",
    security: [{ [BEARER_SCHEME]: [] }],
    responses: {
      200: {
        content: { "application/json": { schema: z.record(z.string(), z.unknown()) } },
        description: "The OpenAPI 3.1 document of the API's routes.",
      },
      ...authErrors,
    },
  });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "decentral-audit",
      version: "0.1.0",
      description:
        'Receipts of Decentral jobs and the on-chain proof of their charge and settlement. Errors: `{"error":{"code","message"},"requestId"}`.',
    },
  });
  app.route(
    "/",
    ingestRoutes({
      store: deps.store,
      now: deps.now,
      writer: deps.receiptWriter ?? deps.proxy?.writer,
    }),
  );
  // The finance dashboard: pages for people, signed in with a session cookie, over the same
  // report functions as the API above. A page with a trailing slash (a typed or bookmarked
  // slash, or a sign-in's `next`) is that page: "/dashboard/" the overview, and
  // "/dashboard/reconciliation/", which was a JSON 404, the reconciliation.
  app.use("/dashboard/*", async (c, next) => {
    const bare = c.req.path.replace(/\/+$/, "");
    const isPage = c.req.method === "GET" || c.req.method === "HEAD";
    if (!isPage || bare === c.req.path || !methodsOf(bare).includes("GET")) return next();
    // The period asked for goes along: without it the page showed month to date.
    const query = c.req.url.indexOf("?");
    const path = new URL(c.req.url).pathname.replace(/\/+$/, "");
    return c.redirect(`${path}${query < 0 ? "" : c.req.url.slice(query)}`, 308);
  });
  app.route(
    "/dashboard",
    dashboardRoutes({
      store: deps.store,
      now: deps.now ?? Date.now,
      explorer: deps.explorer ?? { cluster: "mainnet-beta" },
      verifier: deps.verifier,
      readiness: deps.readiness,
      metrics,
      readGate,
      ...(deps.statement ? { statement: deps.statement } : {}),
    }),
  );
  if (deps.proxy) app.route("/", proxyRoutes(deps.proxy));

  return app;
}

export type App = ReturnType<typeof createApp>;

/** Liveness: answered without a token and without asking the database. */
const healthz = createRoute({
  method: "get",
  path: "/healthz",
  tags: ["operations"],
  summary: "Liveness: the process answers (no token; the database is not asked)",
  security: [],
  // A probe's parameter (`?deep=1`) or body is refused as on every other route, not answered
  // as if it had been read.
  middleware: [noQueryParameters, noRequestBody] as const,
  responses: {
    200: {
      content: { "application/json": { schema: z.object({ ok: z.literal(true) }) } },
      description: "The process is up.",
    },
    400: {
      content: { "application/json": { schema: ErrorSchema } },
      description: "A query parameter or a body was sent; `error.field` names it.",
    },
  },
});

/**
 * The methods the routes answer on a path (HEAD with GET, as Hono answers it), for a 405's
 * `allow`. Middleware (registered for every method) says nothing of what a path takes.
 */
function routeMethods(routes: readonly { method: string; path: string }[]) {
  const router = new TrieRouter<string>();
  const methods = new Set<string>();
  for (const route of routes) {
    if (route.method === METHOD_NAME_ALL) continue;
    router.add(route.method, route.path, route.method);
    methods.add(route.method);
  }
  if (methods.has("GET")) methods.add("HEAD");
  return (path: string): string[] =>
    [...methods]
      .filter((method) => router.match(method === "HEAD" ? "GET" : method, path)[0].length > 0)
      .sort();
}
