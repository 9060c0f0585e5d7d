import { describe, expect, it } from "vitest";
import { type HttpPost, sendBatch, sendSingle } from "../src/chain/rpc-transport.js";
import { withoutEndpointSecrets } from "../src/chain/url-secrets.js";

/** An endpoint whose JSON-RPC error echoes the path and query it was asked on, as some do. */
const echoing: HttpPost = async (url, body) => {
  const target = new URL(url);
  const echo = `invalid api key ${target.pathname}${target.search} (${url})`;
  const reply = (id: unknown) => ({ jsonrpc: "2.0", id, error: { code: -32401, message: echo } });
  const parsed = JSON.parse(body) as { id: unknown } | { id: unknown }[];
  const text = JSON.stringify(
    Array.isArray(parsed) ? parsed.map((r) => reply(r.id)) : reply(parsed.id),
  );
  return { status: 200, retryAfterMs: null, text };
};

const signal = new AbortController().signal;

// `verify --rpc "https://rpc.example/?api-key=KEY"` against an endpoint that said "invalid api
// key /?api-key=KEY" printed the key in its summary and logged it, while the URL itself was
// shown as its host alone.
describe("an RPC endpoint's error message", () => {
  const urls = [
    "http://127.0.0.1:18996/?api-key=RPCSECRETKEY123",
    "https://mainnet.example.com/v2/PATHSECRETKEY456",
    "https://user:PASSWORDSECRET789@rpc.example.com/",
  ];
  for (const url of urls) {
    it(`keeps no secret of ${new URL(url).host}'s URL (single and batch)`, async () => {
      const single = await sendSingle(
        echoing,
        url,
        { id: 1, method: "getSlot", params: [] },
        1000,
        signal,
      );
      expect(single.kind).toBe("rpc_error");
      const message = (single as { message: string }).message;
      expect(message).not.toMatch(/SECRET/);
      expect(message).toContain("invalid api key");
      const batch = await sendBatch(
        echoing,
        url,
        [{ id: 7, method: "getSlot", params: [] }],
        1000,
        signal,
      );
      expect(batch).not.toBe("refused");
      expect(JSON.stringify(batch)).not.toMatch(/SECRET/);
    });
  }

  it("leaves a message naming no part of the URL as it was, and short path parts alone", () => {
    expect(
      withoutEndpointSecrets("Node is behind by 42 slots", "https://h.example/v2/KEYKEYKEYKEY"),
    ).toBe("Node is behind by 42 slots");
    expect(withoutEndpointSecrets("route v2 unknown", "https://h.example/v2/KEYKEYKEYKEY")).toBe(
      "route v2 unknown",
    );
    expect(
      withoutEndpointSecrets("bad key KEY/KEY/KEY", "https://h.example/?k=KEY%2FKEY%2FKEY"),
    ).toBe("bad key [redacted]");
  });
});
