import { createHash } from "node:crypto";
import { AppError } from "../errors.js";

/**
 * Keyset position in a listing ordered by (created_at, job_id). Opaque to clients: base64url of
 * a small JSON array, so its layout can change without breaking anyone who only echoes it.
 * A keyset (not an offset) keeps pages stable while new jobs arrive: each page starts strictly
 * after the last row the client saw, whatever was inserted meanwhile.
 */
export interface JobCursor {
  createdAt: number;
  jobId: string;
}

/**
 * The query a cursor continues: the listing, its order and every filter (the page size is none).
 * A position read under another query is no next page of it: from `order=desc` sent with
 * `order=asc` it walks back over the rows shown, and from another filter or listing it starts
 * mid-list, leaving out every row before it.
 */
export type CursorQuery = Record<string, string | number | undefined>;

/** A short digest of `query`, the same whatever the order of its members. */
function queryDigest(query: CursorQuery): string {
  const members = Object.entries(query)
    .filter(([, value]) => value !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash("sha256").update(JSON.stringify(members)).digest("base64url").slice(0, 12);
}

/** Encodes a cursor of `query`. */
export function encodeCursor(cursor: JobCursor, query: CursorQuery): string {
  return Buffer.from(
    JSON.stringify([cursor.createdAt, cursor.jobId, queryDigest(query)]),
    "utf8",
  ).toString("base64url");
}

/**
 * Decodes a cursor `encodeCursor` produced for `query`; anything else, or one of another query,
 * is a 400 naming `cursor`.
 */
export function decodeCursor(text: string, query: CursorQuery): JobCursor {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
  } catch {
    // the one error below
  }
  if (
    !Array.isArray(value) ||
    value.length !== 3 ||
    !Number.isSafeInteger(value[0]) ||
    (value[0] as number) < 0 ||
    typeof value[1] !== "string" ||
    value[1] === "" ||
    typeof value[2] !== "string"
  ) {
    throw new AppError("validation_failed", "cursor: not a cursor returned by this API", {
      field: "cursor",
    });
  }
  if (value[2] !== queryDigest(query)) {
    throw new AppError(
      "validation_failed",
      "cursor: returned by another query (another listing, order, period or filter); a cursor continues only the query that returned it: send that query, or start again without a cursor",
      { field: "cursor" },
    );
  }
  return { createdAt: value[0] as number, jobId: value[1] as string };
}
