import { hc } from "hono/client";
import type { AuditApi } from "./audit-api.js";

export type { AuditApi };

/**
 * Typed client of the audit API for TypeScript backends: every route's query, params and JSON
 * response are inferred. `token` is an access token (`da_...`) of a sufficient role.
 *
 * @example
 * const api = createAuditClient("http://127.0.0.1:8787", process.env.AUDIT_TOKEN!);
 * const res = await api.audit[":jobId"].$get({ param: { jobId } });
 * if (res.ok) console.log((await res.json()).verdict);
 */
export function createAuditClient(
  baseUrl: string,
  token: string,
  options: { fetch?: typeof fetch } = {},
) {
  return hc<AuditApi>(baseUrl, {
    headers: { authorization: `Bearer ${token}` },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
}

export type AuditClient = ReturnType<typeof createAuditClient>;
