/* The lease rules of `locks` written once for both dialects. */

import { type Column, eq, lte, or, type SQL, sql } from "drizzle-orm";

/** A lease row from the placeholders `name`, `owner`, `now` and `until`. */
export function leaseRow() {
  return {
    name: sql.placeholder("name"),
    owner: sql.placeholder("owner"),
    acquiredAt: sql.placeholder("now"),
    expiresAt: sql.placeholder("until"),
  };
}

/**
 * What the insert of a lease row does to the row of its name already there (`ON CONFLICT DO
 * UPDATE … WHERE`, one statement, so two racers cannot both win). `take`: a lease expired by the
 * new row's time, or our own, is overwritten. `claim`: only our own is renewed; another owner's
 * is never judged by its expiry (its wall clock against ours).
 */
export function leaseOnConflict(
  locks: { owner: Column; expiresAt: Column },
  rule: "take" | "claim",
): { set: Record<string, SQL>; setWhere: SQL } {
  const renew = { acquiredAt: sql`excluded.acquired_at`, expiresAt: sql`excluded.expires_at` };
  const ours = eq(locks.owner, sql`excluded.owner`);
  return rule === "take"
    ? {
        set: { owner: sql`excluded.owner`, ...renew },
        setWhere: or(lte(locks.expiresAt, sql`excluded.acquired_at`), ours)!,
      }
    : { set: renew, setWhere: ours };
}
