import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { jobs } from "../src/db/schema.js";
import { runImportCommand } from "../src/recorder/import-command.js";
import { wireReceipt } from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

const quietIo = (stdin: Readable = Readable.from([])) => ({
  stdin,
  out: () => {},
  err: () => {},
  progress: false,
});

// `import receipts.jsonl.gz` was refused as "the CSV header (line 1) is not CSV (Invalid
// Opening Quote ...)", and with --format jsonl its binary bytes were quoted as a first line:
// neither said the file was compressed, nor how to read it.
describe("import of a compressed file", () => {
  const r = wireReceipt();
  const jsonl = `${JSON.stringify(r)}\n`;
  const csv = `job_id,escrow_tx\n${r.job_id},${r.escrow_tx}\n`;

  it("is refused whole, naming the compression and the command that reads it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "inp66-import-gz-"));
    const cases: [string, Buffer, { format?: "jsonl" | "csv" }, string][] = [
      ["receipts.jsonl.gz", gzipSync(jsonl), {}, "gzip-compressed"],
      ["receipts.jsonl.gz", gzipSync(jsonl), { format: "jsonl" }, "gzip-compressed"],
      ["receipts.csv", gzipSync(csv), {}, "gzip-compressed"],
      [
        "receipts.zst",
        Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.from(jsonl)]),
        {},
        "zstd-compressed",
      ],
      [
        "receipts.zip",
        Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.from(jsonl)]),
        {},
        "a zip archive",
      ],
    ];
    for (const [name, bytes, options, what] of cases) {
      const file = join(dir, name);
      writeFileSync(file, bytes);
      const store = createTestStore();
      await expect(runImportCommand(store, file, options, quietIo()), name).rejects.toMatchObject({
        code: "validation_failed",
        details: { field: "file" },
        message: expect.stringContaining(`the file is ${what}, not text: decompress it first`),
      });
      expect(store.db.select().from(jobs).all()).toHaveLength(0);
    }
  });

  it("on stdin too, and a CSV header that merely starts with BZh is still read", async () => {
    const store = createTestStore();
    await expect(
      runImportCommand(store, "-", {}, quietIo(Readable.from([gzipSync(jsonl)]))),
    ).rejects.toMatchObject({ message: expect.stringContaining("gzip-compressed") });
    const bz = createTestStore();
    const text = `BZh_note,job_id,escrow_tx\nx,${r.job_id},${r.escrow_tx}\n`;
    // An unknown column refuses the header, but as CSV, not as a compressed file.
    await expect(
      runImportCommand(bz, "-", {}, quietIo(Readable.from([Buffer.from(text)]))),
    ).rejects.toMatchObject({ message: expect.stringContaining("CSV header") });
  });
});
