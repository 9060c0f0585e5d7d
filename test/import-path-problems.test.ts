import { mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { runImportCommand } from "../src/recorder/import-command.js";
import { runCliInProcess } from "./support/cli-in-process.js";
import { createTestStore } from "./support/store.js";

const quietIo = () => ({ stdin: Readable.from([]), out: () => {}, err: () => {}, progress: false });

// `import receipts.jsonl/x`, a link loop, or a path longer than the system takes said Node's own
// "ENOTDIR: not a directory, stat '...'" (the 5,000-character path quoted whole).
describe("import of a path that cannot name a file", () => {
  it("says why, by the path, with nothing imported", async () => {
    const dir = mkdtempSync(join(tmpdir(), "inp66-import-path-"));
    const file = join(dir, "receipts.jsonl");
    writeFileSync(file, "");
    symlinkSync(join(dir, "b"), join(dir, "a"));
    symlinkSync(join(dir, "a"), join(dir, "b"));
    const long = join(dir, "x".repeat(5000));
    const cases: [string, string][] = [
      [
        `${file}/x`,
        "no such file (a part of its path is a file, not a folder); nothing was imported",
      ],
      [join(dir, "a"), "a loop of symbolic links; nothing was imported"],
      [long, "or a name in it is longer than this system takes; nothing was imported"],
    ];
    for (const [path, says] of cases) {
      const error = await runImportCommand(createTestStore(), path, {}, quietIo()).catch(
        (e: Error) => e,
      );
      expect(error).toMatchObject({ code: "bad_request", details: { field: "file" } });
      expect((error as Error).message).toContain(says);
      expect((error as Error).message.length).toBeLessThan(400);
    }
  });

  it("as --db or --out too: exit 2, said plainly, the long path cut", async () => {
    const dir = mkdtempSync(join(tmpdir(), "inp66-db-out-path-"));
    const file = join(dir, "plain.txt");
    writeFileSync(file, "");
    const long = join(dir, "y".repeat(5000));
    const runs: [string[], string][] = [
      [
        ["tokens", "list", "--db", `${file}/x.db`],
        "no such file (a part of its path is a file, not a folder) (check --db",
      ],
      [
        ["db", "migrate", "--db", long],
        "or a name in it is longer than this system takes (check --db",
      ],
      [
        [
          "report",
          "reconciliation",
          "--since",
          "1d",
          "--db",
          ":memory:x",
          "--out",
          `${file}/r.csv`,
        ],
        "--out: ",
      ],
    ];
    for (const [args, says] of runs) {
      const run = await runCliInProcess(args, {});
      expect(run.code, args.join(" ").slice(0, 80)).toBe(2);
      expect(run.stderr).toContain(says);
      expect(run.stderr).not.toMatch(/ENOTDIR|ENAMETOOLONG/);
      expect(run.stderr.length).toBeLessThan(600);
    }
  }, 60_000);
});
