import { createHash, randomBytes } from "node:crypto";
import type { Store } from "../db/client.js";
import type { TokenRole } from "../db/schema.js";
import { createSessionsStore } from "../store/sessions.js";

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
export async function createSession(
  store: Store,
  tokenId: string,
  now: number,
  ttlMs = SESSION_TTL_MS,
): Promise<{ sessionId: string; expiresAt: number }> {
  const sessionId = randomBytes(32).toString("base64url");
  const expiresAt = now + ttlMs;
  await createSessionsStore(store).open({
    idHash: sha256(sessionId),
    tokenId,
    createdAt: now,
    expiresAt,
  });
  return { sessionId, expiresAt };
}

/** The live session of a cookie value, or null: unknown, expired, or its token revoked. */
export async function findSession(
  store: Store,
  sessionId: string,
  now: number,
): Promise<DashboardSession | null> {
  if (sessionId.length === 0 || sessionId.length > 100) return null;
  const row = await createSessionsStore(store).find(sha256(sessionId), now);
  return row ? { ...row, csrf: csrfTokenOf(sessionId) } : null;
}

/** Ends a session (sign out); unknown ids are ignored. */
export function deleteSession(store: Store, sessionId: string): Promise<void> {
  return createSessionsStore(store).delete(sha256(sessionId));
}
