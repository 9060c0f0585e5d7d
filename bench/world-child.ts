import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type LocalWorld, type RpcFaults, startLocalWorld } from "../src/localnet/world.js";
import { type CapturedResponse, sendCaptured } from "./captured-response.js";
import { peakRssBytes } from "./peak-rss.js";

/**
 * Child process of the benchmark holding the local world (chain, JSON-RPC, simulator) and a
 * static upstream stub, so the simulator's chain work runs on its own event loop and core.
 * It speaks to the bench over IPC: `ready` once listening, then answers requests by `id`.
 */

/** Messages the bench sends. */
export type WorldRequest =
  | { id: number; op: "addRpcEndpoint"; faults: Partial<RpcFaults> }
  | { id: number; op: "rpcStats"; url: string }
  | { id: number; op: "slot" }
  | { id: number; op: "rss" }
  | { id: number; op: "cpu" }
  | { id: number; op: "stub"; responses: StubResponses };

/** What the stub answers: a captured response of each kind, replayed with a fresh job id. */
export interface StubResponses {
  json: CapturedResponse;
  stream: CapturedResponse;
}

export type { CapturedResponse };

/** Sent once the world listens. */
export interface WorldReady {
  op: "ready";
  rpcUrl: string;
  decentralBaseUrl: string;
  apiKeys: string[];
}

const send = (message: unknown) => process.send?.(message);

/**
 * The stub: answers `POST /v1/chat/completions` with the captured response of the asked kind,
 * same headers and body sizes, a unique job id per response (same length) and no chain work.
 */
function startStub(responses: () => StubResponses | null): Promise<string> {
  let counter = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => {
      const captured = responses();
      if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
        // The jobs API the proxy consults afterwards: the stub knows no jobs.
        const body = JSON.stringify({ error: { code: "job_not_found", message: "stub" } });
        res.writeHead(404, { "content-type": "application/json" }).end(body);
        return;
      }
      if (!captured) {
        res.writeHead(503).end();
        return;
      }
      const body = Buffer.concat(parts).toString("utf8");
      const kind = body.includes('"stream":true') ? captured.stream : captured.json;
      const suffix = (counter++).toString(36);
      const jobId = kind.jobId.slice(0, kind.jobId.length - suffix.length) + suffix;
      const headers: [string, string][] = kind.headers.map(([n, v]) => [
        n,
        v.replaceAll(kind.jobId, jobId),
      ]);
      sendCaptured(res, kind, jobId, headers);
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`);
    });
  });
}

async function main() {
  const slotMs = Number(process.env.BENCH_SLOT_MS ?? "400");
  const finalitySlots = Number(process.env.BENCH_FINALITY_SLOTS ?? "32");
  const world: LocalWorld = await startLocalWorld({ slotMs, finalitySlots });
  let stubResponses: StubResponses | null = null;
  const stubUrl = await startStub(() => stubResponses);
  process.on("message", async (raw: WorldRequest) => {
    try {
      switch (raw.op) {
        case "addRpcEndpoint":
          send({ id: raw.id, ok: true, value: await world.addRpcEndpoint(raw.faults) });
          break;
        case "rpcStats":
          send({ id: raw.id, ok: true, value: world.rpcStats(raw.url) });
          break;
        case "slot":
          send({ id: raw.id, ok: true, value: world.currentSlot() });
          break;
        case "rss":
          send({ id: raw.id, ok: true, value: peakRssBytes() });
          break;
        case "cpu": {
          const usage = process.cpuUsage();
          send({ id: raw.id, ok: true, value: (usage.user + usage.system) / 1000 });
          break;
        }
        case "stub":
          stubResponses = raw.responses;
          send({ id: raw.id, ok: true, value: stubUrl });
          break;
      }
    } catch (error) {
      send({ id: raw.id, ok: false, error: String(error) });
    }
  });
  process.on("disconnect", () => {
    void world.close().finally(() => process.exit(0));
  });
  send({
    op: "ready",
    rpcUrl: world.rpcUrl,
    decentralBaseUrl: world.decentralBaseUrl,
    apiKeys: world.apiKeys,
  } satisfies WorldReady);
}

void main();
