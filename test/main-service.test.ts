import { once } from "node:events";
import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { AppError } from "../src/errors.js";
import { createLogger } from "../src/log.js";
import { startService } from "../src/main.js";

const quiet = createLogger({ level: "silent" });

describe("service", () => {
  it("serves /healthz on the configured port and closes cleanly", async () => {
    const config = loadConfig({ DATABASE_URL: ":memory:", PORT: "0", AUDIT_PROFILE: "localnet" });
    const service = await startService(config, quiet);
    const response = await fetch(`${service.url}/healthz`);
    expect(await response.json()).toEqual({ ok: true });
    await service.close();
  });

  it("refuses a port already in use with an error naming it, not a crash", async () => {
    const blocker = createServer().listen(0, "127.0.0.1");
    await once(blocker, "listening");
    const port = (blocker.address() as { port: number }).port;
    const config = loadConfig({ DATABASE_URL: ":memory:", PORT: String(port) });
    const started = startService(config, quiet);
    await expect(started).rejects.toBeInstanceOf(AppError);
    await expect(started).rejects.toThrow(`port ${port}`);
    blocker.close();
  });
});
