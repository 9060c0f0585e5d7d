import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import bs58 from "bs58";
import { sendCaptured } from "./captured-response.js";
import { peakRssBytes } from "./peak-rss.js";
import type { CapturedResponse, StubResponses } from "./world-child.js";

/**
 * Child process of the benchmark: a static upstream as production looks to the service. It
 * replays a captured simulator response of each kind (same headers, body and stream chunks),
 * but every job gets a fresh job id and fresh escrow and settlement signatures that no RPC has
 * seen, and its jobs API answers for them: so the service's verifier keeps thousands of jobs
 * waiting for finality, as it does while real traffic flows, with no chain work in the stub.
 * Protocol of children.ts: `ready`, then `responses` (what to replay) and `cpu` by id.
 */

const send = (message: unknown) => process.send?.(message);

interface Issued {
  escrow: string;
  settlement: string | null;
}

let responses: StubResponses | null = null;
const issued = new Map<string, Issued>();
const maxRemembered = 200_000;
let counter = 0;

const signature = () => bs58.encode(randomBytes(64));

function jobsApi(res: ServerResponse, jobId: string) {
  const job = issued.get(jobId);
  if (!job) {
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "job_not_found", message: "stub" } }));
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(
    JSON.stringify({
      id: jobId,
      status: "settled",
      credits_charged: "0.0042",
      on_chain: { escrow_tx: job.escrow, settlement_tx: job.settlement ?? signature() },
    }),
  );
}

function replay(res: ServerResponse, kind: CapturedResponse) {
  // A fixed width: a suffix of varying length made ids collide ("…k7" from 7 and from k7), and
  // each collision was measured as a conflicting receipt instead of a new job.
  const suffix = (counter++).toString(36).padStart(6, "0");
  const jobId = kind.jobId.slice(0, kind.jobId.length - suffix.length) + suffix;
  const job: Issued = { escrow: signature(), settlement: null };
  const headers: [string, string][] = kind.headers.map(([n, v]) => {
    const name = n.toLowerCase();
    if (name === "x-decentral-tx-signature") return [n, job.escrow];
    if (name === "x-decentral-settlement-tx") {
      job.settlement = signature();
      return [n, job.settlement];
    }
    return [n, v.replaceAll(kind.jobId, jobId)];
  });
  issued.set(jobId, job);
  if (issued.size > maxRemembered) issued.delete(issued.keys().next().value as string);
  sendCaptured(res, kind, jobId, headers);
}

const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  const parts: Buffer[] = [];
  req.on("data", (c: Buffer) => parts.push(c));
  req.on("end", () => {
    const url = req.url ?? "";
    const jobMatch = /\/jobs\/([^/?]+)/.exec(url);
    if (req.method === "GET" && jobMatch) return jobsApi(res, jobMatch[1] as string);
    if (req.method !== "POST" || !url.endsWith("/chat/completions") || !responses) {
      res.writeHead(404).end();
      return;
    }
    const stream = Buffer.concat(parts).toString("utf8").includes('"stream":true');
    replay(res, stream ? responses.stream : responses.json);
  });
});

server.listen(0, "127.0.0.1", () => {
  process.on("message", (raw: { id: number; op: string; responses?: StubResponses }) => {
    if (raw.op === "responses" && raw.responses) {
      responses = raw.responses;
      send({ id: raw.id, ok: true, value: true });
    } else if (raw.op === "cpu") {
      const usage = process.cpuUsage();
      send({ id: raw.id, ok: true, value: (usage.user + usage.system) / 1000 });
    } else if (raw.op === "rss") {
      send({ id: raw.id, ok: true, value: peakRssBytes() });
    }
  });
  process.on("disconnect", () => {
    server.closeAllConnections();
    server.close();
  });
  send({ op: "ready", url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1` });
});
