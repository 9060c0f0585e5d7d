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

/** Encodes a cursor. */
export function encodeCursor(cursor: JobCursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt, cursor.jobId]), "utf8").toString(
    "base64url",
  );
}

/** Decodes a cursor produced by `encodeCursor`; anything else is a 400 naming `cursor`. */
export function decodeCursor(text: string): JobCursor {
  try {
    const value: unknown = JSON.parse(Buffer.from(text, "base64url").toString("utf8"));
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      Number.isSafeInteger(value[0]) &&
      typeof value[1] === "string"
    ) {
      return { createdAt: value[0] as number, jobId: value[1] as string };
    }
  } catch {
    // fall through to the one error below
  }
  throw new AppError("validation_failed", "cursor: not a cursor returned by this API", {
    field: "cursor",
  });
}
