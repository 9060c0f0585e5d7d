import { spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { refuseUnwritableOut, writeFileWhole } from "../src/file-output.js";

describe("a report written with --out", () => {
  it("replaces the file whole and leaves nothing beside it", () => {
    const dir = mkdtempSync(join(tmpdir(), "file-output-"));
    const path = join(dir, "verify.md");
    writeFileSync(path, "yesterday's summary");
    const before = lstatSync(path).ino;
    writeFileWhole(path, "today's summary");
    expect(readFileSync(path, "utf8")).toBe("today's summary");
    // A new file renamed into place, not the old one rewritten where a crash could cut it.
    expect(lstatSync(path).ino).not.toBe(before);
    expect(readdirSync(dir)).toEqual(["verify.md"]);
  });

  it("keeps what was there when the new one cannot be put in place, and leaves no scrap", () => {
    const dir = mkdtempSync(join(tmpdir(), "file-output-"));
    // A folder where the file should go: the write succeeds, the rename over it fails.
    const path = join(dir, "verify.md");
    mkdirSync(path);
    writeFileSync(join(path, "kept"), "x");
    expect(() => writeFileWhole(path, "today's summary")).toThrow(`--out: cannot write ${path}`);
    expect(readdirSync(dir)).toEqual(["verify.md"]);
    expect(readdirSync(path)).toEqual(["kept"]);
  });

  it("writes a symbolic link's target and keeps the link", () => {
    const dir = mkdtempSync(join(tmpdir(), "file-output-"));
    mkdirSync(join(dir, "reports"));
    const target = join(dir, "reports", "latest.json");
    writeFileSync(target, "yesterday's summary");
    const link = join(dir, "last.json");
    symlinkSync("reports/latest.json", link);
    refuseUnwritableOut(link);
    writeFileWhole(link, "today's summary");
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readlinkSync(link)).toBe("reports/latest.json");
    expect(readFileSync(target, "utf8")).toBe("today's summary");
    expect(readdirSync(join(dir, "reports"))).toEqual(["latest.json"]);
  });

  it("writes through a link whose target is not there yet", () => {
    const dir = mkdtempSync(join(tmpdir(), "file-output-"));
    const link = join(dir, "last.json");
    symlinkSync(join(dir, "first.json"), link);
    refuseUnwritableOut(link);
    writeFileWhole(link, "today's summary");
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(dir, "first.json"), "utf8")).toBe("today's summary");
  });

  it("writes into a named pipe, whose reader gets the report, and leaves the pipe", async () => {
    const dir = mkdtempSync(join(tmpdir(), "file-output-"));
    const fifo = join(dir, "summary.pipe");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const reader = spawn("cat", [fifo], { stdio: ["ignore", "pipe", "inherit"] });
    // Also when the test fails by timing out: a reader left waiting on the pipe would stay.
    onTestFinished(() => {
      reader.kill();
    });
    let read = "";
    reader.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      read += chunk;
    });
    const ended = new Promise((resolve) => reader.once("exit", resolve));
    refuseUnwritableOut(fifo);
    // Until `cat` has come to open the pipe, there is no reader, and the write is refused.
    await vi.waitFor(() => writeFileWhole(fifo, "today's summary"), { timeout: 10_000 });
    expect(await ended).toBe(0);
    expect(read).toBe("today's summary");
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(readdirSync(dir)).toEqual(["summary.pipe"]);
  });

  it("reads each link in the folder the kernel resolves, not the link's text", () => {
    const dir = mkdtempSync(join(tmpdir(), "file-output-"));
    mkdirSync(join(dir, "real", "sub"), { recursive: true });
    // `a` is `real/sub`, so `a/link` -> `../report.txt` is `real/report.txt` (`cat a/link`).
    symlinkSync("real/sub", join(dir, "a"));
    symlinkSync("../report.txt", join(dir, "real", "sub", "link"));
    writeFileSync(join(dir, "real", "report.txt"), "yesterday's summary");
    writeFileSync(join(dir, "report.txt"), "another report");
    const out = join(dir, "a", "link");
    refuseUnwritableOut(out);
    writeFileWhole(out, "today's summary");
    expect(readFileSync(out, "utf8")).toBe("today's summary");
    expect(readFileSync(join(dir, "report.txt"), "utf8")).toBe("another report");
    expect(readdirSync(join(dir, "real")).sort()).toEqual(["report.txt", "sub"]);
  });

  it("keeps a private report private: the file replaced keeps its mode", () => {
    const dir = mkdtempSync(join(tmpdir(), "file-output-"));
    const path = join(dir, "statement.csv");
    writeFileSync(path, "yesterday's figures");
    chmodSync(path, 0o600);
    writeFileWhole(path, "today's figures");
    expect(readFileSync(path, "utf8")).toBe("today's figures");
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it.runIf(process.getuid?.() === 0)("run as root, keeps the owner of the file it replaces", () => {
    const dir = mkdtempSync(join(tmpdir(), "file-output-"));
    const path = join(dir, "statement.csv");
    writeFileSync(path, "yesterday's figures");
    chownSync(path, 4321, 4322);
    chmodSync(path, 0o640);
    writeFileWhole(path, "today's figures");
    const stat = statSync(path);
    expect([stat.uid, stat.gid, stat.mode & 0o777]).toEqual([4321, 4322, 0o640]);
  });
});
