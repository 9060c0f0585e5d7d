import type { Role } from "../check-catalogue.js";
import type { Profile } from "../profiles.js";

/** The `<prefix><job_id>` memos by which a transaction names the job and step it serves. */

export type MemoKind = "escrow" | "settle" | "refund";

/** Reads `<prefix><job_id>` memos of a transaction under the profile's conventions. */
export function parseJobMemos(
  profile: Profile,
  memos: readonly string[],
): { kind: MemoKind; jobId: string }[] {
  const prefixes: [MemoKind, string][] = [
    ["escrow", profile.memo.escrowPrefix],
    ["settle", profile.memo.settlePrefix],
    ["refund", profile.memo.refundPrefix],
  ];
  const found: { kind: MemoKind; jobId: string }[] = [];
  for (const raw of memos) {
    const memo = raw.trim();
    for (const [kind, prefix] of prefixes) {
      if (memo.startsWith(prefix) && memo.length > prefix.length) {
        found.push({ kind, jobId: memo.slice(prefix.length) });
      }
    }
  }
  return found;
}

/**
 * The one job a transaction's memos name, or null when they name none or several. A job
 * naming a transaction whose memos name it alone owns its money whoever else names it (see
 * `signatureOwner`), so its verdict never turns on the transaction's other namers.
 */
export function memoJobOf(profile: Profile, memos: readonly string[]): string | null {
  const named = new Set(parseJobMemos(profile, memos).map((m) => m.jobId));
  return named.size === 1 ? ([...named][0] ?? null) : null;
}

export const memoKindOf: Record<Role, MemoKind> = {
  escrow: "escrow",
  settlement: "settle",
  refund: "refund",
};

/** The memo prefix of a role. */
export function memoPrefix(profile: Profile, role: Role): string {
  return role === "escrow"
    ? profile.memo.escrowPrefix
    : role === "settlement"
      ? profile.memo.settlePrefix
      : profile.memo.refundPrefix;
}
