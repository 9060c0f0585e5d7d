import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../src/log.js";
import { createRecordingProxy, type RecordingProxy } from "../src/recorder/proxy.js";
import { listen } from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

const key = "dcntrl_live_abcdefghijklmnopqrstuvwxyz012345";

/**
 * The head of the request the proxy sends upstream, line by line as it reaches the wire: the
 * proxy hands Node its headers as a list of pairs, to which Node adds no `Host` of its own and
 * which it does not merge, so each line is the proxy's to get right.
 */
describe("the upstream request's head", () => {
  const store = createTestStore();
  const heads: string[][] = [];
  let upstreamHost = "";
  let proxy: RecordingProxy;
  const servers: { url: string; close(): Promise<void> }[] = [];
  let proxyUrl = "";

  beforeAll(async () => {
    const upstream = http.createServer(async (req, res) => {
      heads.push(req.rawHeaders);
      for await (const _ of req) {
        // drain the body
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
    const up = await listen(upstream);
    servers.push(up);
    upstreamHost = new URL(up.url).host;
    proxy = createRecordingProxy({
      store,
      log: createLogger({ level: "silent" }),
      upstreamBaseUrl: `${up.url}/v1`,
    });
    const served = await listen(http.createServer((req, res) => void proxy.handle(req, res)));
    servers.push(served);
    proxyUrl = served.url;
  });
  afterAll(async () => {
    await proxy.close();
    for (const s of servers) await s.close();
  });

  /** Sends raw header lines (a name may repeat) and the body; resolves with the status. */
  const send = (method: string, lines: string[], body = "") =>
    new Promise<number>((resolve, reject) => {
      const req = http.request(`${proxyUrl}/v1/chat/completions`, { method, headers: lines });
      req.on("response", (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      });
      req.on("error", reject);
      req.end(body);
    });

  const lines = (raw: string[]) => {
    const out: [string, string][] = [];
    for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!.toLowerCase(), raw[i + 1]!]);
    return out;
  };

  it("names the upstream host once, asks for no coding, and sends the body's length", async () => {
    const body = JSON.stringify({ model: "qwen3-8b", messages: [] });
    const status = await send(
      "POST",
      [
        "Host",
        "client.example",
        "Authorization",
        `Bearer ${key}`,
        "Accept-Encoding",
        "gzip, br",
        "X-Multi",
        "a",
        "X-Multi",
        "b",
        "X-Audit-Tag-Team",
        "search",
        "X-Audit-Token",
        "ours",
        "Content-Type",
        "application/json",
        "Content-Length",
        String(Buffer.byteLength(body)),
      ],
      body,
    );
    expect(status).toBe(200);
    const head = lines(heads.at(-1)!);
    const named = (name: string) => head.filter(([n]) => n === name).map(([, v]) => v);
    expect(named("host")).toEqual([upstreamHost]);
    expect(named("accept-encoding")).toEqual(["identity"]);
    expect(named("content-length")).toEqual([String(Buffer.byteLength(body))]);
    expect(named("transfer-encoding")).toEqual([]);
    expect(named("authorization")).toEqual([`Bearer ${key}`]);
    // Joined by Node as it read them, and sent on as one line, as before.
    expect(named("x-multi")).toEqual(["a, b"]);
    expect(head.filter(([n]) => n.startsWith("x-audit-"))).toEqual([]);
    expect(named("connection")).toEqual(["keep-alive"]);
  });

  it("sends a GET with no body and no length, still naming the upstream host", async () => {
    // A list of lines gets no Host from Node: the client names one, as every client does.
    const before = heads.length;
    expect(await send("GET", ["Host", "client.example", "Authorization", `Bearer ${key}`])).toBe(
      200,
    );
    expect(heads).toHaveLength(before + 1);
    const head = lines(heads.at(-1)!);
    const named = (name: string) => head.filter(([n]) => n === name).map(([, v]) => v);
    expect(named("host")).toEqual([upstreamHost]);
    expect(named("content-length")).toEqual([]);
    expect(named("transfer-encoding")).toEqual([]);
  });
});
