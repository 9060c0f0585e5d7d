import type { ServerResponse } from "node:http";

/** A simulator response captured once, replayed by the benchmark's stubs. */
export interface CapturedResponse {
  status: number;
  headers: [string, string][];
  /** Body chunks as sent by the simulator (the stream's events stay separate writes). */
  chunks: string[];
  jobId: string;
}

/**
 * Answers with a captured simulator response under another job id: its status, `headers`, and
 * body; stream events go out as separate writes, one per turn, as the simulator sends them.
 */
export function sendCaptured(
  res: ServerResponse,
  kind: CapturedResponse,
  jobId: string,
  headers: [string, string][],
): void {
  res.writeHead(kind.status, headers);
  const chunks = kind.chunks.map((c) => c.replaceAll(kind.jobId.slice(4), jobId.slice(4)));
  if (chunks.length <= 1) {
    res.end(chunks[0] ?? "");
    return;
  }
  let i = 0;
  const next = () => {
    if (i === chunks.length) {
      res.end();
      return;
    }
    res.write(chunks[i++]);
    setImmediate(next);
  };
  next();
}
