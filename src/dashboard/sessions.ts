import { createHash, randomBytes } from "node:crypto";
import type { Store } from "../db/client.js";
import type { TokenRole } from "../db/schema.js";

/** How long a dashboard sign-in lasts unless signed out sooner: one working day. */
export const SESSION_TTL_MS = 8 * 60 * 60 * 1000;

/** A live session as the pages see it: never its id, never the token. */
export interface DashboardSession {
  tokenId: string;
  tokenName: string;
  role: TokenRole;
  expiresAt: number;
  /** Proof of intent that every state-changing form carries (see `csrfTokenOf`). */
  csrf: string;
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");

/**
 * The CSRF token of a session: derived from the session id, which only the cookie holds
 * (HttpOnly), so a page on another origin can neither read nor compute it. Nothing more to store.
 */
export function csrfTokenOf(sessionId: string): string {
  return sha256(`csrf:${sessionId}`);
}

/**
 * Opens a session for an authenticated token. Returns the session id, which goes only into
 * the cookie; the store keeps its SHA-256. Expired sessions are swept here, so the table stays
 * as small as the number of people signed in.
 */
export function createSession(
  store: Store,
  tokenId: string,
  now: number,
  ttlMs = SESSION_TTL_MS,
): { sessionId: string; expiresAt: number } {
  const sessionId = randomBytes(32).toString("base64url");
  const expiresAt = now + ttlMs;
  store.sqlite.prepare("DELETE FROM dashboard_sessions WHERE expires_at <= ?").run(now);
  store.sqlite
    .prepare(
      "INSERT INTO dashboard_sessions (id_hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
    )
    .run(sha256(sessionId), tokenId, now, expiresAt);
  return { sessionId, expiresAt };
}

/** The live session of a cookie value, or null: unknown, expired, or its token revoked. */
export function findSession(store: Store, sessionId: string, now: number): DashboardSession | null {
  if (sessionId.length === 0 || sessionId.length > 100) return null;
  const row = store.sqlite
    .prepare(
      `SELECT s.token_id AS tokenId, s.expires_at AS expiresAt, t.name AS tokenName, t.role AS role
       FROM dashboard_sessions s JOIN access_tokens t ON t.id = s.token_id
       WHERE s.id_hash = ? AND s.expires_at > ? AND t.revoked_at IS NULL`,
    )
    .get(sha256(sessionId), now) as Omit<DashboardSession, "csrf"> | undefined;
  return row ? { ...row, csrf: csrfTokenOf(sessionId) } : null;
}

/** Ends a session (sign out); unknown ids are ignored. */
export function deleteSession(store: Store, sessionId: string): void {
  store.sqlite.prepare("DELETE FROM dashboard_sessions WHERE id_hash = ?").run(sha256(sessionId));
}
