import { hash } from "node:crypto";

/**
 * First 16 hex digits of the SHA-256 of a bearer key: tells keys apart (reports by key, the
 * credit vault pinned per key) without storing one. The proxy, the fetch wrapper and ingest
 * clients compute the same value from the same key.
 */
export function keyFingerprint(authorization: string | undefined | null): string | null {
  if (!authorization) return null;
  const key = authorization.replace(/^Bearer\s+/i, "").trim();
  if (key.length === 0) return null;
  // One-shot (per request): no Hash object.
  return hash("sha256", key, "hex").slice(0, 16);
}
