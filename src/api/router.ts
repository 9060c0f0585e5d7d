import { OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import type { Handler, MiddlewareHandler } from "hono";
import type { Store } from "../db/client.js";
import type { TokenRole } from "../db/schema.js";
import { BEARER_SCHEME, requireRole, type TokenSource } from "./auth.js";
import type { AppEnv } from "./context.js";
import { noRequestBody } from "./openapi-schemas.js";

/**
 * Who may call the routes of a router: a token of `role` (read from `source`, default
 * `Authorization: Bearer`), or anyone (`public`, said out loud so that it is a decision).
 */
export type RouterAccess =
  | { store: Store; role: TokenRole; source?: TokenSource; now?: () => number }
  | { public: true };

/**
 * A route that declares no request body refuses one (400 naming `body`): sent and ignored, it
 * looked read. Put after the role check, so a caller without a token learns nothing more.
 */
function bodilessRefusesBody<R extends RouteConfig>(route: R): R {
  if (route.request?.body) return route;
  const middleware = route.middleware
    ? Array.isArray(route.middleware)
      ? route.middleware
      : [route.middleware]
    : [];
  return { ...route, middleware: [noRequestBody, ...middleware] };
}

/** The route-registering methods of a Hono app; all of them put the role check first. */
const shortcuts = ["get", "post", "put", "delete", "patch", "options", "query", "all"] as const;

/**
 * A sub-app that declares its role once: every route added to it (with `openapi()`, `on()` or a
 * method shortcut such as `post()`) answers 401 without a token and 403 with a token of a role
 * that does not suffice, before any of its own middleware or validators run. The check is put
 * in front of each route rather than as a `use("*")` middleware, because a sub-app mounted at
 * "/" would otherwise guard every other route of the app too. OpenAPI routes are documented
 * with the bearer scheme unless they say otherwise.
 */
export function createRouter(access: RouterAccess): OpenAPIHono<AppEnv> {
  const router = new OpenAPIHono<AppEnv>();
  if ("public" in access) return router;
  const guard: MiddlewareHandler<AppEnv> = requireRole(access.store, access.role, {
    ...(access.source ? { source: access.source } : {}),
    ...(access.now ? { now: access.now } : {}),
  });
  // Hono's `on` is an own property taking any methods, paths and handlers; its overloads are
  // for typed chains, which the methods below keep.
  const on = router.on as unknown as (
    method: string | string[],
    path: string | string[],
    ...handlers: Handler[]
  ) => OpenAPIHono<AppEnv>;
  const guarded = (method: string | string[], path: string | string[], ...handlers: Handler[]) =>
    on(method, path, guard as Handler, ...handlers);
  router.on = guarded as typeof router.on;
  for (const method of shortcuts) {
    router[method] = ((path: unknown, ...handlers: Handler[]) => {
      if (typeof path !== "string") {
        throw new TypeError(`${method}(): a router with a role takes the path first`);
      }
      return guarded(method === "all" ? "ALL" : method, path, ...handlers);
    }) as (typeof router)[typeof method] as never;
  }
  const openapi = router.openapi;
  router.openapi = ((route, handler, hook) =>
    openapi(
      { security: [{ [BEARER_SCHEME]: [] }], ...bodilessRefusesBody(route) },
      handler,
      hook,
    )) as typeof router.openapi;
  return router;
}
