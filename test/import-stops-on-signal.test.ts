import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openSqliteStore, type SqliteStore } from "../src/db/client.js";
import { migrateStore } from "../src/db/migrate.js";
import { wireReceipt } from "./support/recorder-fixtures.js";
import { cliArgv, startCli, until } from "./support/service-process.js";

/**
 * `import` told to stop (a SIGTERM from a supervisor, Ctrl-C at a terminal) while it reads a
 * pipe whose writer goes on: it commits the lines it read, prints its summary and where it
 * stopped, and ends by the signal it was sent (a shell sees 143 for SIGTERM, systemd a clean
 * stop). It used to die at once with no word of how far it got, so whoever stopped it could not
 * tell what was in the store.
 */
describe("import told to stop", () => {
  let dir: string;
  /**
   * A thread of the process is blocked opening a FIFO no writer has opened (its wait channel in
   * /proc, `wait_for_partner`): the import has begun its wait.
   */
  function waitsForWriter(pid: number): boolean {
    const tasks = readdirSync(`/proc/${pid}/task`);
    return tasks.some((task) => {
      try {
        return readFileSync(`/proc/${pid}/task/${task}/wchan`, "utf8") === "wait_for_partner";
      } catch {
        return false;
      }
    });
  }

  let db: string;
  let reader: SqliteStore;
  const count = () =>
    Number(reader.db.get<{ n: number }>(sql`select count(*) as n from jobs`)?.n ?? 0);
  const line = (i: number) => `${JSON.stringify(wireReceipt({ job_id: `job_stop${i}` }))}\n`;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "import-stop-"));
    db = join(dir, "audit.db");
    const setup = openSqliteStore(db);
    migrateStore(setup);
    setup.close();
    reader = openSqliteStore(db);
  });
  afterEach(() => reader.close());

  /** An import reading a FIFO whose writer stays open: the import waits on it for more. */
  function importOfPipe() {
    const fifo = join(dir, "receipts.jsonl");
    execFileSync("mkfifo", [fifo]);
    const cli = startCli(["import", fifo, "--db", db]);
    const writer = createWriteStream(fifo);
    // Lines still queued when the import ends are written into a pipe nobody reads: EPIPE.
    writer.on("error", () => {});
    return { cli, writer };
  }

  /** The signal the process ended by (a shell reports 128 + its number: 143 for SIGTERM). */
  const endedBy = async (cli: ReturnType<typeof startCli>) => {
    expect(await cli.exited).toBeNull();
    return cli.child.signalCode;
  };

  const stderrOf = async (cli: ReturnType<typeof startCli>) => {
    await cli.exited;
    return cli.stderr();
  };

  it("commits what it read, says where it stopped, ends by SIGTERM, and a re-run adds only the rest", async () => {
    const { cli, writer } = importOfPipe();
    const sent = 1_500;
    const total = sent + 100;
    // Each receipt once, sent again as it was (`wireReceipt` makes up its signatures).
    const lines = Array.from({ length: total }, (_, i) => line(i));
    for (const text of lines.slice(0, sent)) writer.write(text);
    // At least one transaction in (1,000 receipts at most each), the rest of the lines read or
    // waiting in the pipe.
    await until(() => count() > 0, 60_000, 20);
    await new Promise((resolve) => setTimeout(resolve, 300));
    cli.child.kill("SIGTERM");
    expect(await endedBy(cli)).toBe("SIGTERM");
    writer.destroy();

    const stored = count();
    const head = cli.logs.map((l) => String(l.text ?? "")).find((l) => l.startsWith("imported"));
    expect(head).toBe(
      `imported ${join(dir, "receipts.jsonl")}: ${stored} receipts, ${stored} created, 0 duplicate, 0 updated, 0 conflicting, 0 rejected`,
    );
    expect(await stderrOf(cli)).toContain(
      `stopped by SIGTERM after line ${stored}: the lines before are imported, the rest of the file was not read; running the import again is safe`,
    );

    // The whole file again, more lines after it: what the stop left out is created, once.
    const file = join(dir, "again.jsonl");
    writeFileSync(file, lines.join(""));
    const again = startCli(["import", file, "--db", db]);
    expect(await again.exited).toBe(0);
    expect(again.logs.map((l) => String(l.text ?? ""))).toContain(
      `imported ${file}: ${total} receipts, ${total - stored} created, ${stored} duplicate, 0 updated, 0 conflicting, 0 rejected`,
    );
    expect(count()).toBe(total);
  }, 120_000);

  it("stops a wait on a quiet pipe at once on Ctrl-C, and is not refused as empty", async () => {
    const { cli, writer } = importOfPipe();
    // The writer has opened the pipe and sent nothing: the import waits for its first line.
    await new Promise<void>((resolve) => writer.once("open", () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const asked = Date.now();
    cli.child.kill("SIGINT");
    expect(await endedBy(cli)).toBe("SIGINT");
    expect(Date.now() - asked).toBeLessThan(10_000);
    writer.destroy();
    expect(await stderrOf(cli)).toContain("stopped by SIGINT after line 0");
    expect(cli.logs.map((l) => String(l.text ?? ""))[0]).toMatch(/: 0 receipts, 0 created/);
    expect(count()).toBe(0);
  }, 60_000);

  it("says it was stopped when the signal ended its writer too (Ctrl-C on a pipeline)", async () => {
    const file = join(dir, "big.jsonl");
    // Far more than the import reads before the signal (a few hundred lines, a transaction or
    // two): `cat` is still writing when the signal ends it. Making 60,000 lines took 7 to 8 s.
    writeFileSync(file, Array.from({ length: 10_000 }, (_, i) => line(i)).join(""));
    const argv = [process.execPath, ...cliArgv(["import", "-", "--db", db])];
    const quoted = argv.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
    // A shell that outlives the signal, and a pipeline in its own process group, as a
    // terminal's job is: the signal reaches `cat` and the import at once.
    const shell = spawn("bash", ["-c", `trap true TERM; cat '${file}' | ${quoted}; echo "rc=$?"`], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    shell.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    shell.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
    const ended = once(shell, "exit");
    await until(() => count() > 0, 60_000, 20);
    process.kill(-(shell.pid as number), "SIGTERM");
    await ended;
    expect(out).toContain("rc=143");
    const stored = count();
    expect(out).toMatch(new RegExp(`imported stdin: \\d+ receipts, ${stored} created`));
    expect(err).toMatch(/stopped by SIGTERM after line \d+/);
  }, 120_000);

  it("stops a wait for the pipe's writer at once", async () => {
    const fifo = join(dir, "nobody-writes.jsonl");
    execFileSync("mkfifo", [fifo]);
    const cli = startCli(["import", fifo, "--db", db]);
    // Its open waits for a writer that never comes; the signal is sent once it does. A fixed
    // 2 s was, on a loaded host, before the program had even loaded: the signal ended it
    // before its handler was there, with nothing said.
    await until(() => waitsForWriter(cli.child.pid!), 30_000, 20);
    const asked = Date.now();
    cli.child.kill("SIGTERM");
    expect(await endedBy(cli)).toBe("SIGTERM");
    expect(Date.now() - asked).toBeLessThan(10_000);
    expect(await stderrOf(cli)).toContain("stopped by SIGTERM after line 0");
  }, 60_000);
});
