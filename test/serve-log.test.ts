import { execFileSync } from "node:child_process";
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { fitLine, serveLogger } from "../src/serve-log.js";

/**
 * `serve`'s logger writing into a pipe (`serve | reader`, docker's log pipe) that is full: the
 * reader fell behind, so each write waits in the kernel until it reads again. With `--workers`
 * every process of the service writes into that one pipe.
 */
interface FullPipe {
  /** The end the loggers write to (blocking, as a shell hands it over). */
  writeFd: number;
  /** Reads what is in the pipe until `done` says it is all there; throws after `timeoutMs`. */
  readUntil(done: (text: string) => boolean, timeoutMs?: number): Promise<string>;
}

const opened: number[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const fd of opened.splice(0)) closeSync(fd);
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function fullPipe(): FullPipe {
  const dir = mkdtempSync(join(tmpdir(), "serve-log-"));
  dirs.push(dir);
  const fifo = join(dir, "stdout");
  execFileSync("mkfifo", [fifo]);
  const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const writeFd = openSync(fifo, constants.O_WRONLY);
  const fillFd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
  opened.push(readFd, writeFd, fillFd);
  // Filled with a marker of its own, so that the reader can tell it from the log lines.
  const filler = Buffer.from(`${"#".repeat(1023)}\n`);
  for (;;) {
    try {
      writeSync(fillFd, filler);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EAGAIN") break;
      throw error;
    }
  }
  // Read a page at a time, as a slow reader does: each read frees room for one more page of a
  // waiting write, and whichever writer the kernel wakes takes it.
  const chunk = Buffer.alloc(4_096);
  let text = "";
  return {
    writeFd,
    async readUntil(done, timeoutMs = 3_000) {
      const started = Date.now();
      for (;;) {
        try {
          const n = readSync(readFd, chunk);
          text += chunk.subarray(0, n).toString("utf8");
          await new Promise((r) => setTimeout(r, 1));
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
          const logged = logLines(text);
          if (done(logged)) return logged;
          if (Date.now() - started > timeoutMs) return logged;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    },
  };
}

/** What the loggers wrote: the pipe's text without the filler's lines. */
const logLines = (text: string) =>
  text
    .split("\n")
    .filter((line) => !/^#+$/.test(line))
    .join("\n");

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("serve's log into a pipe its reader fell behind on", () => {
  it("writes a request line gathered while a write waited on the pipe, without another line after it", async () => {
    const pipe = fullPipe();
    const { log } = serveLogger("info", pipe.writeFd);
    // Over 4 KiB of request lines: a write starts, and waits for the full pipe.
    for (let i = 0; i < 15; i++) log.info({ path: `/v1/${"a".repeat(300)}`, i }, "request");
    // Gathered while that write waits; the gathering's timer fires while it still waits.
    log.info({ path: "/v1/last" }, "request");
    await pause(400);
    const text = await pipe.readUntil((t) => t.includes("/v1/last"));
    const lines = text.split("\n").filter(Boolean);
    expect(lines.map((l) => JSON.parse(l).path)).toContain("/v1/last");
    expect(lines).toHaveLength(16);
  });

  it("writes, before exit, what was gathered beside a write still waiting on the pipe", async () => {
    const pipe = fullPipe();
    const { log, flush } = serveLogger("info", pipe.writeFd);
    for (let i = 0; i < 15; i++) log.info({ path: `/v1/${"a".repeat(300)}`, i }, "request");
    log.info({ path: "/v1/last" }, "request");
    // A drain's last flush, asked while the write of the first lines waits: once it says
    // written, every line is in the pipe (a process exits right after it).
    let written: boolean | undefined;
    void flush().then((w) => {
      written = w;
    });
    const text = await pipe.readUntil(() => written !== undefined);
    expect(written).toBe(true);
    expect(
      text
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l).path),
    ).toContain("/v1/last");
  });

  it("keeps each line whole when two processes' writes wait on the same pipe", async () => {
    const pipe = fullPipe();
    // Two loggers of the one descriptor, as a cluster's workers inherit the primary's stdout;
    // each write of theirs waits in the kernel beside the other's.
    const loggers = ["a", "b"].map((name) => ({ name, ...serveLogger("info", pipe.writeFd) }));
    for (let i = 0; i < 60; i++) {
      for (const { name, log } of loggers) {
        log.info(
          { path: `/v1/${name.repeat(200 + ((i * 37) % 300))}`, worker: name, i },
          "request",
        );
      }
    }
    const text = await pipe.readUntil(
      (t) => t.split("\n").filter(Boolean).length >= 120 && t.endsWith("\n"),
      5_000,
    );
    const lines = text.split("\n").filter(Boolean);
    const cut = lines.filter((line) => {
      try {
        JSON.parse(line);
        return false;
      } catch {
        return true;
      }
    });
    expect(cut.map((l) => l.slice(0, 80))).toEqual([]);
    expect(lines).toHaveLength(120);
    for (const { name } of loggers) {
      const own = lines.map((l) => JSON.parse(l)).filter((l) => l.worker === name);
      expect(own.map((l) => l.i)).toEqual(Array.from({ length: 60 }, (_, i) => i));
    }
  });

  it("shortens a line over 4 KiB to one whole JSON line, so that no other process's write lands inside it", async () => {
    const pipe = fullPipe();
    const loggers = ["a", "b"].map((name) => ({ name, ...serveLogger("info", pipe.writeFd) }));
    const detail = (name: string, i: number) => `${name}${i}:${"x".repeat(6_000)}`;
    for (let i = 0; i < 20; i++) {
      for (const { name, log } of loggers) {
        log.warn({ worker: name, i, detail: detail(name, i), answers: [1, 2, 3] }, "rpc answer");
      }
    }
    const text = await pipe.readUntil(
      (t) => t.split("\n").filter(Boolean).length >= 40 && t.endsWith("\n"),
      5_000,
    );
    const lines = text.split("\n").filter(Boolean);
    expect(lines).toHaveLength(40);
    for (const line of lines) {
      expect(Buffer.byteLength(line) + 1).toBeLessThanOrEqual(4_096);
      const entry = JSON.parse(line);
      expect(entry.msg).toBe("rpc answer");
      expect(entry.answers).toEqual([1, 2, 3]);
      expect(entry.cut_bytes).toBeGreaterThan(6_000);
      expect(detail(entry.worker, entry.i).startsWith(entry.detail.slice(0, -1))).toBe(true);
      expect(entry.detail).toMatch(/…$/);
      expect(entry.detail.length).toBeGreaterThan(3_000);
    }
    for (const { name } of loggers) {
      const own = lines.map((l) => JSON.parse(l)).filter((l) => l.worker === name);
      expect(own.map((l) => l.i)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    }
  });
});

describe("fitLine", () => {
  const line = (entry: object) => `${JSON.stringify(entry)}\n`;
  const base = { level: 40, time: 1, pid: 7, hostname: "h", name: "decentral-audit" };

  it("leaves a line that fits as it is", () => {
    const short = line({ ...base, msg: "ok", detail: "y".repeat(3_000) });
    expect(fitLine(short)).toBe(short);
  });

  it("keeps the first items of a long array, and says how many it left out", () => {
    const long = line({
      ...base,
      msg: "disagreement",
      endpoints: Array.from({ length: 2_000 }, (_, i) => `e${i}`),
    });
    const entry = JSON.parse(fitLine(long));
    expect(entry.endpoints[0]).toBe("e0");
    expect(entry.endpoints.at(-1)).toMatch(/^\d+ more$/);
    expect(entry.cut_bytes).toBe(Buffer.byteLength(long));
  });

  it("keeps pino's fields and the message of a line of too many keys to cut", () => {
    const keys = Object.fromEntries(Array.from({ length: 800 }, (_, i) => [`key${i}`, i]));
    const fitted = fitLine(line({ ...base, msg: "many", ...keys }));
    expect(Buffer.byteLength(fitted)).toBeLessThanOrEqual(4_096);
    expect(JSON.parse(fitted)).toEqual({ ...base, msg: "many", cut_bytes: expect.any(Number) });
  });

  it("fits a line that is not JSON as its message", () => {
    const fitted = fitLine(`${"z".repeat(10_000)}\n`);
    expect(Buffer.byteLength(fitted)).toBeLessThanOrEqual(4_096);
    expect(JSON.parse(fitted).msg).toMatch(/^z+…$/);
  });
});
