import { hash } from "node:crypto";

/** The bearer key of an Authorization header (or a bare key); null when there is none. */
function bearerKey(authorization: string | undefined | null): string | null {
  if (!authorization) return null;
  const key = authorization.replace(/^Bearer\s+/i, "").trim();
  return key.length === 0 ? null : key;
}

/**
 * First 16 hex digits of the SHA-256 of a bearer key: tells keys apart (reports by key, the
 * credit vault pinned per key) without storing one. The proxy, the fetch wrapper and ingest
 * clients compute the same value from the same key.
 */
export function keyFingerprint(authorization: string | undefined | null): string | null {
  const key = bearerKey(authorization);
  // One-shot (per request): no Hash object.
  return key === null ? null : hash("sha256", key, "hex").slice(0, 16);
}

/**
 * The next 16 hex digits of the same SHA-256 (digits 16..32): recorded beside the fingerprint
 * and never shown as the key's identity. 64 bits are few enough that whoever mints the keys
 * (the operator) can make two with one fingerprint in about 2^32 hashes; the same two keys
 * also agreeing here would take 2^64 more. Receipts of one fingerprint naming two key checks
 * are two keys the audit would otherwise take for one (`key.fingerprint_unique`).
 */
export function keyCheck(authorization: string | undefined | null): string | null {
  const key = bearerKey(authorization);
  return key === null ? null : hash("sha256", key, "hex").slice(16, 32);
}

/** Both values of one key, hashed once. */
export function keyIdentity(
  authorization: string | undefined | null,
): { fingerprint: string; check: string } | null {
  const key = bearerKey(authorization);
  if (key === null) return null;
  const digest = hash("sha256", key, "hex");
  return { fingerprint: digest.slice(0, 16), check: digest.slice(16, 32) };
}
