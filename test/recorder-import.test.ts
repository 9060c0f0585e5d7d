import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { Readable } from "node:stream";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { jobs } from "../src/db/schema.js";
import { importReceipts } from "../src/recorder/import.js";
import { runImportCommand } from "../src/recorder/import-command.js";
import { signature, wireReceipt } from "./support/recorder-fixtures.js";
import { createTestStore } from "./support/store.js";

/** A command's io: no stdin, nothing printed. */
function quietIo() {
  return { stdin: Readable.from([]), out: () => {}, err: () => {}, progress: false };
}

/** A command's io with no stdin, keeping what it prints: `out`, `err`, and both in order. */
function capturedIo() {
  const out: string[] = [];
  const err: string[] = [];
  const lines: string[] = [];
  const io = {
    stdin: Readable.from([]),
    out: (l: string) => {
      out.push(l);
      lines.push(l);
    },
    err: (l: string) => {
      err.push(l);
      lines.push(l);
    },
    progress: false,
  };
  return { io, out, err, lines };
}

/**
 * Expects the import command to refuse `file` whole (a command that throws exits 2, src/cli.ts;
 * one that resolves exits 0 or 1), its message naming `why`.
 */
async function expectRefusedWhole(
  store: Parameters<typeof runImportCommand>[0],
  file: string,
  why: string,
): Promise<void> {
  await expect(runImportCommand(store, file, {}, quietIo()), basename(file)).rejects.toMatchObject({
    code: "validation_failed",
    details: { field: "file" },
    message: expect.stringContaining(why),
  });
}

function csvLine(values: (string | number | null)[]): string {
  return values.map((v) => (v === null ? "" : String(v))).join(",");
}

describe("import", () => {
  // A database that stops mid-import (a PostgreSQL restart, a full disk) ended it with only
  // the database's message: nothing said what was committed, nor whether to run it again.
  it("says how many receipts were committed when the database stops it, and that rerunning is safe", async () => {
    const store = createTestStore();
    store.sqlite.exec(`CREATE TRIGGER stops BEFORE INSERT ON jobs
      WHEN (SELECT count(*) FROM jobs) >= 4 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
    const text = Array.from({ length: 7 }, () => JSON.stringify(wireReceipt())).join("\n");
    const error = await importReceipts(store, Readable.from([text]), { batchSize: 2 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toContain("database or disk is full");
    expect(message).toContain(
      "stopped the import at line 5; the 4 receipts before it are done (4 created)",
    );
    expect(message).toContain("running the import again is safe");
    expect(store.db.select().from(jobs).all()).toHaveLength(4);
  });

  it("says what the lines before a stopped import came to, not that every one was committed", async () => {
    const store = createTestStore();
    store.sqlite.exec(`CREATE TRIGGER stops BEFORE INSERT ON jobs
      WHEN (SELECT count(*) FROM jobs) >= 1 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`);
    // Two refused lines and one receipt, then the database stops.
    const lines = ["{}", "{}", JSON.stringify(wireReceipt()), JSON.stringify(wireReceipt())];
    const error = await importReceipts(store, Readable.from([lines.join("\n")]), {
      batchSize: 3,
    }).catch((e: unknown) => e);
    const message = (error as Error).message;
    expect(message).toContain(
      "stopped the import at line 4; the 3 receipts before it are done (1 created, 2 rejected)",
    );
    expect(message).not.toContain("3 receipts before it were committed");
    expect(store.db.select().from(jobs).all()).toHaveLength(1);
  });

  it("reads a JSONL file that starts with a byte-order mark", async () => {
    const store = createTestStore();
    const text = `\uFEFF${JSON.stringify(wireReceipt())}\n${JSON.stringify(wireReceipt())}\n`;
    const summary = await importReceipts(store, Readable.from([text]));
    expect(summary).toMatchObject({ total: 2, created: 2, rejected: [] });
  });

  it("keeps what was read before a CSV syntax error and says where reading stopped", async () => {
    const store = createTestStore();
    const good = Array.from({ length: 1200 }, () => wireReceipt());
    const lines = good.map((r) => `${r.job_id},${r.escrow_tx}`);
    const chunks = ["job_id,escrow_tx\n", ...lines.map((l) => `${l}\n`), 'job_b,"unclosed\n'];
    const summary = await importReceipts(store, Readable.from(chunks), { format: "csv" });
    // Every row before it: the parser's rows not yet taken when it failed were dropped.
    expect(summary.created).toBe(1200);
    expect(store.db.select().from(jobs).all()).toHaveLength(summary.created);
    expect(summary.rejected).toEqual([
      expect.objectContaining({
        line: 1202,
        field: "file",
        reason: expect.stringContaining("CSV syntax"),
      }),
    ]);
  });

  it("imports JSONL, names the bad lines, and records conflicts as findings", async () => {
    const store = createTestStore();
    const a = wireReceipt();
    const b = wireReceipt({ settlement_tx: null });
    const text = [
      JSON.stringify(a),
      "",
      "{broken json",
      JSON.stringify(b),
      JSON.stringify(wireReceipt({ job_id: "JOB_UPPER" })),
      JSON.stringify(a),
      JSON.stringify({ ...a, escrow_tx: signature() }),
    ].join("\n");
    const summary = await importReceipts(store, Readable.from([text]), { batchSize: 2 });
    expect(summary).toMatchObject({ total: 6, created: 2, duplicate: 1, updated: 0 });
    expect(summary.rejected).toEqual([
      { line: 3, field: "line", reason: "not valid JSON" },
      expect.objectContaining({ line: 5, field: "job_id" }),
    ]);
    expect(summary.conflicts).toEqual([{ line: 7, jobId: a.job_id, differences: ["escrow_tx"] }]);
    const rows = store.db.select().from(jobs).all();
    expect(rows.map((r) => r.source)).toEqual(["import", "import"]);
    expect(rows.find((r) => r.jobId === b.job_id)?.backfillState).toBe("pending");
  });

  it("imports CSV with usage and tag columns, counting the header as line 1", async () => {
    const store = createTestStore();
    const a = wireReceipt();
    const header =
      "job_id,escrow_tx,settlement_tx,worker,credits_remaining,model,prompt_tokens,completion_tokens,total_tokens,created_at,tag_team";
    const rows = [
      header,
      csvLine([
        a.job_id as string,
        a.escrow_tx as string,
        a.settlement_tx as string,
        a.worker as string,
        "10.25",
        "qwen3-8b",
        1,
        2,
        3,
        "2026-11-25T00:00:00Z",
        "search",
      ]),
      csvLine(["job_bad", "short", null, null, null, null, null, null, null, null, null]),
    ];
    const summary = await importReceipts(store, Readable.from([rows.join("\r\n")]));
    expect(summary.created).toBe(1);
    expect(summary.rejected).toEqual([expect.objectContaining({ line: 3, field: "escrow_tx" })]);
    expect(store.db.select().from(jobs).get()).toMatchObject({
      jobId: a.job_id,
      creditsRemainingUnits: 102_500n,
      totalTokens: 3,
      tags: { team: "search" },
      createdAt: Date.UTC(2026, 10, 25),
    });
  });

  it("reads a CSV tags cell only as a JSON object, and refuses a tag two columns name differently", async () => {
    const store = createTestStore();
    const cells = [
      ['"{""team"":""a"",""env"":""prod""}"', "a"],
      ['"{""team"":""a""}"', "b"],
      ['"""abc"""', ""],
      ["123", ""],
      ["null", ""],
      ['"{""team"":""a"",""team"":""z""}"', ""],
    ];
    const ids = cells.map(() => wireReceipt());
    const rows = ["job_id,escrow_tx,tags,tag_team"].concat(
      cells.map(([tags, team], i) => `${ids[i]?.job_id},${ids[i]?.escrow_tx},${tags},${team}`),
    );
    const summary = await importReceipts(store, Readable.from([rows.join("\n")]), {
      format: "csv",
    });
    expect(summary.created).toBe(1);
    expect(store.db.select().from(jobs).get()?.tags).toEqual({ team: "a", env: "prod" });
    // A JSON string was spread into tags "0", "1", "2"; a number or null vanished; the later
    // of two columns won.
    expect(summary.rejected.map(({ line, field }) => [line, field])).toEqual([
      [3, "tag_team"],
      [4, "tags"],
      [5, "tags"],
      [6, "tags"],
      [7, "tags.team"],
    ]);
  });

  it("imports a CSV max_tokens column as JSONL does, and names it when it is not an integer", async () => {
    const store = createTestStore();
    const a = wireReceipt();
    const b = wireReceipt();
    const rows = [
      "job_id,escrow_tx,settlement_tx,worker,model,total_tokens,max_tokens",
      csvLine([a.job_id, a.escrow_tx, a.settlement_tx, a.worker, "qwen3-8b", 3, 512] as string[]),
      csvLine([b.job_id, b.escrow_tx, b.settlement_tx, b.worker, "qwen3-8b", 3, "1e3"] as string[]),
    ];
    const summary = await importReceipts(store, Readable.from([rows.join("\n")]));
    expect(summary.created).toBe(1);
    expect(summary.rejected).toEqual([expect.objectContaining({ line: 3, field: "max_tokens" })]);
    expect(store.db.select().from(jobs).get()).toMatchObject({ jobId: a.job_id, maxTokens: 512 });
  });

  it("imports the status the caller got, from CSV and JSONL, and names a status that is none", async () => {
    const store = createTestStore();
    const a = wireReceipt();
    const b = wireReceipt();
    const c = wireReceipt();
    const csv = [
      "job_id,escrow_tx,settlement_tx,worker,model,http_status",
      csvLine([a.job_id, a.escrow_tx, a.settlement_tx, a.worker, "qwen3-8b", 500] as string[]),
      csvLine([b.job_id, b.escrow_tx, b.settlement_tx, b.worker, "qwen3-8b", 1000] as string[]),
    ];
    const fromCsv = await importReceipts(store, Readable.from([csv.join("\n")]));
    expect(fromCsv.created).toBe(1);
    expect(fromCsv.rejected).toEqual([expect.objectContaining({ line: 3, field: "http_status" })]);
    const fromJsonl = await importReceipts(
      store,
      Readable.from([`${JSON.stringify({ ...c, http_status: 402 })}\n`]),
    );
    expect(fromJsonl.created).toBe(1);
    const status = (id: string) =>
      store.db.select().from(jobs).where(eq(jobs.jobId, id)).get()?.httpStatus;
    expect([status(a.job_id as string), status(c.job_id as string)]).toEqual([500, 402]);
  });

  it("refuses a CSV file whose header names a column no receipt has, naming it, and imports nothing", async () => {
    const store = createTestStore();
    const a = wireReceipt();
    for (const [column, hint] of [
      // Ignored, an error answer's status was lost with every cell of the column.
      // Quoted as the file writes it, the name the user searches the file for.
      ["httpStatus", 'column "httpStatus": unknown field; did you mean http_status?'],
      ["requested_modle", 'column "requested_modle": unknown field; did you mean requested_model?'],
      // JSONL's usage object: no spelling is near the three columns a CSV gives it as.
      [
        "usage",
        'column "usage": a CSV gives the usage as columns prompt_tokens, completion_tokens and total_tokens',
      ],
      ["note", 'column "note": unknown field; a receipt takes job_id'],
    ] as const) {
      const rows = [
        `job_id,escrow_tx,tag_team,prompt_tokens,${column}`,
        csvLine([a.job_id, a.escrow_tx, "search", 3, "500"] as string[]),
      ];
      await expect(
        importReceipts(store, Readable.from([rows.join("\n")])),
        column,
      ).rejects.toMatchObject({
        code: "validation_failed",
        details: { field: "header" },
        message: expect.stringContaining(hint),
      });
    }
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("rejects a JSONL line with a field no receipt has, naming it, and imports the rest", async () => {
    const store = createTestStore();
    const lines = [wireReceipt(), wireReceipt({ httpStatus: 500 }), wireReceipt()];
    const summary = await importReceipts(
      store,
      Readable.from([lines.map((line) => JSON.stringify(line)).join("\n")]),
    );
    expect(summary).toMatchObject({ total: 3, created: 2 });
    expect(summary.rejected).toEqual([
      {
        line: 2,
        field: "httpStatus",
        reason: expect.stringContaining("did you mean http_status?"),
      },
    ]);
  });

  it("rejects a JSONL line naming a member twice with different values, and imports the rest", async () => {
    const store = createTestStore();
    const refused = wireReceipt({ http_status: 502 });
    const lines = [
      JSON.stringify(wireReceipt()),
      // A 502 gave no completion: read as the 200 after it, its settlement would pass.
      `${JSON.stringify(refused).slice(0, -1)},"http_status":200}`,
      JSON.stringify(wireReceipt()),
    ];
    const summary = await importReceipts(store, Readable.from([lines.join("\n")]));
    expect(summary).toMatchObject({ total: 3, created: 2 });
    expect(summary.rejected).toEqual([
      { line: 2, field: "http_status", reason: expect.stringContaining("more than once") },
    ]);
    expect(
      store.db
        .select()
        .from(jobs)
        .where(eq(jobs.jobId, String(refused.job_id)))
        .all(),
    ).toEqual([]);
  });

  it("rejects a JSONL line that is not UTF-8, naming its line, and stores nothing of it", async () => {
    const store = createTestStore();
    const good = wireReceipt({ model: "qwen3-8b-é" });
    const bad = wireReceipt({ model: "q~~" });
    const badBytes = Buffer.from(`${JSON.stringify(bad)}\r\n`);
    const at = badBytes.indexOf("~~");
    badBytes[at] = 0xff;
    badBytes[at + 1] = 0xfe;
    const goodBytes = Buffer.from(`${JSON.stringify(good)}\r\n`);
    const split = goodBytes.indexOf("é") + 1;
    // Chunks cut inside a character and between CR and LF, as a file read in blocks may be.
    const chunks = [
      goodBytes.subarray(0, split),
      goodBytes.subarray(split, -1),
      Buffer.concat([goodBytes.subarray(-1), badBytes]),
      Buffer.from(`${JSON.stringify(wireReceipt())}\r`),
    ];
    const summary = await importReceipts(store, Readable.from(chunks));
    expect(summary).toMatchObject({ total: 3, created: 2 });
    expect(summary.rejected).toEqual([{ line: 2, field: "line", reason: "not valid UTF-8" }]);
    const stored = store.db.select().from(jobs).all();
    expect(stored.map((row) => row.jobId)).not.toContain(bad.job_id);
    expect(stored.find((row) => row.jobId === good.job_id)?.model).toBe("qwen3-8b-é");
  });

  it("rejects a CSV row with a cell that is not UTF-8, naming its line and column", async () => {
    const store = createTestStore();
    const [a, b] = [wireReceipt(), wireReceipt()];
    const text = [
      "\uFEFFjob_id,escrow_tx,model",
      csvLine([a.job_id, a.escrow_tx, "~~"] as string[]),
      csvLine([b.job_id, b.escrow_tx, "qwen3-8b"] as string[]),
    ].join("\n");
    const bytes = Buffer.from(text);
    // A mark no job id or base58 signature holds ("QQ" was, now and then, in a signature).
    const at = bytes.indexOf("~~");
    bytes[at] = 0xff;
    bytes[at + 1] = 0xfe;
    const summary = await importReceipts(store, Readable.from([bytes]));
    expect(summary).toMatchObject({ total: 2, created: 1 });
    expect(summary.rejected).toEqual([{ line: 2, field: "model", reason: "not valid UTF-8" }]);
    expect(
      store.db
        .select()
        .from(jobs)
        .all()
        .map((row) => row.jobId),
    ).toEqual([b.job_id]);
  });

  it("refuses a binary file as no CSV header, imports nothing, and the command exits 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "recorder-import-"));
    const file = join(dir, "photo.bin");
    // Not text: a quote inside its first "cell" stops a CSV parser on line 1.
    writeFileSync(file, Buffer.from([0xbd, 0xce, 0x22, 0x5c, 0xdb, 0x16, 0x0a, 0x22, 0xff, 0x0a]));
    const io = quietIo();
    const store = createTestStore();
    // A command that throws exits 2 (src/cli.ts); one that resolves exits 0 or 1.
    await expect(runImportCommand(store, file, {}, io)).rejects.toMatchObject({
      code: "validation_failed",
      details: { field: "header" },
      message: expect.stringContaining("is not CSV"),
    });
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("refuses a CSV file whose header names a column twice, naming it, and imports nothing", async () => {
    const store = createTestStore();
    const a = wireReceipt();
    const rows = [
      "job_id,escrow_tx,settlement_tx,worker,model,Worker",
      csvLine([a.job_id, a.escrow_tx, a.settlement_tx, a.worker, "qwen3-8b", "x"] as string[]),
    ];
    await expect(importReceipts(store, Readable.from([rows.join("\n")]))).rejects.toMatchObject({
      code: "validation_failed",
      details: { field: "header" },
      message: expect.stringContaining('"worker" twice (also as "Worker": column names are read'),
    });
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("refuses a file whose CSV header lacks the receipt columns, naming them, and imports nothing", async () => {
    const store = createTestStore();
    for (const [text, missing] of [
      ["hello, this is no receipt file\n", "job_id, escrow_tx"],
      ["job_id,model\njob_a,qwen3-8b\n", "escrow_tx"],
    ] as const) {
      await expect(importReceipts(store, Readable.from([text]))).rejects.toMatchObject({
        code: "validation_failed",
        details: { field: "header" },
        message: expect.stringContaining(`has no column ${missing};`),
      });
    }
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
  });

  it("counts the receipt where a CSV syntax error stopped reading, so the counts add up", async () => {
    const store = createTestStore();
    const [a, b, c] = [wireReceipt(), wireReceipt(), wireReceipt()];
    const rows = [
      "job_id,escrow_tx",
      `${a.job_id},${a.escrow_tx}`,
      `${b.job_id},${b.escrow_tx}`,
      `${c.job_id},not-a-signature`,
      'job_d,"unclosed',
      `${wireReceipt().job_id},${signature()}`,
    ];
    const summary = await importReceipts(store, Readable.from([`${rows.join("\n")}\n`]));
    expect(summary).toMatchObject({ total: 4, created: 2 });
    expect(summary.rejected).toHaveLength(2);
    const counted =
      summary.created +
      summary.duplicate +
      summary.updated +
      summary.conflicts.length +
      summary.rejected.length;
    expect(counted).toBe(summary.total);
  });

  it("exits 1 and names the rejected lines; exits 0 when every line is accepted", async () => {
    const dir = mkdtempSync(join(tmpdir(), "recorder-import-"));
    const bad = join(dir, "bad.jsonl");
    writeFileSync(
      bad,
      `${JSON.stringify(wireReceipt())}\n${JSON.stringify(wireReceipt({ escrow_tx: "x" }))}\n`,
    );
    const good = join(dir, "good.jsonl");
    writeFileSync(good, `${JSON.stringify(wireReceipt({ created_at: "2026-11-25T10:00:00Z" }))}\n`);
    const { io, out, err } = capturedIo();
    const store = createTestStore();
    expect(await runImportCommand(store, bad, {}, io)).toBe(1);
    expect(out[0]).toContain("2 receipts, 1 created");
    expect(err).toEqual([
      expect.stringMatching(/^line 2: rejected: escrow_tx: /),
      // Dated at the import: receipt.time would fail it imported long after its lock.
      expect.stringMatching(/^1 created without created_at: dated now, at the import, /),
    ]);
    err.length = 0;
    expect(await runImportCommand(store, good, {}, io)).toBe(0);
    // Dated by its own created_at: nothing to say.
    expect(err).toEqual([]);
  });

  it("refuses a CSV row with a cell too few or too many, naming its line, and imports the rest", async () => {
    const dir = mkdtempSync(join(tmpdir(), "recorder-import-"));
    const file = join(dir, "shifted.csv");
    const [a, b, c] = [wireReceipt(), wireReceipt(), wireReceipt()] as Record<string, string>[];
    writeFileSync(
      file,
      [
        "job_id,escrow_tx,settlement_tx,worker,credits_remaining,model,prompt_tokens,completion_tokens",
        csvLine([
          a!.job_id!,
          a!.escrow_tx!,
          a!.settlement_tx!,
          a!.worker!,
          "9",
          "qwen3-8b",
          10,
          20,
        ]),
        // The settlement cell left out: every later value would move one column left.
        csvLine([b!.job_id!, b!.escrow_tx!, b!.worker!, "9", "qwen3-8b", 10, 20]),
        // An unquoted comma in a number: one cell too many.
        csvLine([
          c!.job_id!,
          c!.escrow_tx!,
          c!.settlement_tx!,
          c!.worker!,
          "9,5",
          "qwen3-8b",
          10,
          20,
        ]),
        "",
      ].join("\n"),
    );
    const { io, out, err } = capturedIo();
    const store = createTestStore();
    expect(await runImportCommand(store, file, {}, io)).toBe(1);
    expect(out[0]).toContain("3 receipts, 1 created");
    expect(err).toEqual([
      "line 3: rejected: line: 7 cells where the header has 8",
      "line 4: rejected: line: 9 cells where the header has 8",
      expect.stringMatching(/^1 created without created_at: /),
    ]);
    expect(
      store.db
        .select()
        .from(jobs)
        .all()
        .map((row) => row.jobId),
    ).toEqual([a!.job_id]);
  });

  it("prints a tag name's escape sequences and line breaks from the file as inert text", async () => {
    const dir = mkdtempSync(join(tmpdir(), "recorder-import-"));
    const file = join(dir, "tags\u001b[2J.jsonl");
    const name = "x\u001b[2J\u001b[Hall receipts imported\nok";
    writeFileSync(file, `${JSON.stringify(wireReceipt({ tags: { [name]: "v\u009b" } }))}\n`);
    const { io, lines } = capturedIo();
    expect(await runImportCommand(createTestStore(), file, {}, io)).toBe(1);
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line).not.toMatch(/[\p{Cc}\u202a-\u202e]/u);
    expect(lines[0]).toContain("tags\\u001b[2J.jsonl");
    expect(lines[1]).toContain(
      "rejected: tags.x\\u001b[2J\\u001b[Hall receipts imported\\u000aok: ",
    );
  });

  it("reads a CSV as PowerShell's Export-Csv writes it: byte-order mark, quoted cells, CRLF", async () => {
    const store = createTestStore();
    const [a, b] = [wireReceipt(), wireReceipt()];
    const quoted = (cells: unknown[]) => cells.map((c) => `"${String(c)}"`).join(",");
    const text = [
      quoted(["job_id", "escrow_tx", "model", "tag_team"]),
      quoted([a.job_id, a.escrow_tx, "qwen3-8b", "search"]),
      quoted([b.job_id, b.escrow_tx, "qwen3-8b", "search"]),
    ].join("\r\n");
    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`${text}\r\n`)]);
    // Whole, and with the mark split across the first chunks, as a pipe may hand it over.
    for (const chunks of [
      [bytes],
      [bytes.subarray(0, 1), bytes.subarray(1, 2), bytes.subarray(2)],
    ]) {
      const summary = await importReceipts(store, Readable.from(chunks));
      expect(summary.rejected).toEqual([]);
      expect(summary.total).toBe(2);
    }
    const stored = store.db.select().from(jobs).all();
    expect(stored.map((row) => row.jobId).sort()).toEqual([a.job_id, b.job_id].sort());
  });

  it("refuses a UTF-16 or UTF-32 file whole, naming its encoding, and the command exits 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "recorder-import-"));
    const r = wireReceipt();
    const jsonl = `\uFEFF${JSON.stringify(r)}\r\n`;
    const csv = `\uFEFFjob_id,escrow_tx\r\n${r.job_id},${r.escrow_tx}\r\n`;
    const swap = (b: Buffer) => Buffer.from(b).swap16();
    const utf32le = (text: string) => {
      const out = Buffer.alloc(text.length * 4);
      for (let i = 0; i < text.length; i++) out.writeUInt32LE(text.charCodeAt(i), i * 4);
      return out;
    };
    const files: [string, Buffer, string][] = [
      ["receipts.jsonl", Buffer.from(jsonl, "utf16le"), "UTF-16 LE"],
      ["receipts.csv", Buffer.from(csv, "utf16le"), "UTF-16 LE"],
      ["receipts.txt", swap(Buffer.from(jsonl, "utf16le")), "UTF-16 BE"],
      ["receipts32.jsonl", utf32le(jsonl), "UTF-32 LE"],
    ];
    for (const [name, bytes, encoding] of files) {
      const file = join(dir, name);
      writeFileSync(file, bytes);
      const store = createTestStore();
      await expectRefusedWhole(store, file, `the file is ${encoding} text`);
      expect(store.db.select().from(jobs).all()).toHaveLength(0);
    }
  });

  it("reads stdin when the file is -", async () => {
    const store = createTestStore();
    const io = {
      stdin: Readable.from([`${JSON.stringify(wireReceipt())}\n`]),
      out: () => {},
      err: () => {},
      progress: false,
    };
    expect(await runImportCommand(store, "-", {}, io)).toBe(0);
    expect(store.db.select().from(jobs).all()).toHaveLength(1);
  });

  // A cron importing last night's export got exit 0 and "0 receipts" from a file its exporter
  // left empty (a failed query, a full disk): the day's jobs were never audited, and nothing said.
  it("refuses a file holding no receipt unless --allow-empty says an empty export is fine", async () => {
    const dir = mkdtempSync(join(tmpdir(), "import-empty-"));
    const csvHeader = "job_id,escrow_tx,settlement_tx\n";
    // One store: a file holding no receipt writes nothing, refused or not.
    const store = createTestStore();
    for (const [name, text] of [
      ["empty.jsonl", ""],
      ["blank.jsonl", "\n  \n\r\n"],
      ["header.csv", csvHeader],
      ["bom.csv", `\uFEFF${csvHeader}`],
    ] as const) {
      const file = join(dir, name);
      writeFileSync(file, text);
      const { io, lines } = capturedIo();
      await expect(runImportCommand(store, file, {}, io), name).rejects.toMatchObject({
        code: "validation_failed",
        details: { field: "file" },
        message: expect.stringContaining(`${file}: no receipt in it`),
      });
      expect(await runImportCommand(store, file, { allowEmpty: true }, io)).toBe(0);
      expect(lines.at(-1), name).toContain("0 receipts, 0 created");
    }
    const io = quietIo();
    await expect(runImportCommand(store, "-", {}, io)).rejects.toMatchObject({
      message: expect.stringContaining("stdin: no receipt in it"),
    });
  });

  // A line feed as the very first byte was taken for the end of a CRLF before it, and the
  // process died with a TypeError (an export opening with a blank line, piped to `import -`).
  it("reads a CSV whose first line is blank, naming rows by their own lines", async () => {
    const [a, b] = [wireReceipt(), wireReceipt()];
    const text = `\njob_id,escrow_tx\n${a.job_id},${a.escrow_tx}\n${b.job_id},bad\n`;
    const bytes = Buffer.from(text);
    for (const chunks of [[bytes], [...bytes].map((byte) => Buffer.from([byte]))]) {
      const summary = await importReceipts(createTestStore(), Readable.from(chunks));
      expect(summary).toMatchObject({ total: 2, created: 1 });
      expect(summary.rejected.map((r) => [r.line, r.field])).toEqual([[4, "escrow_tx"]]);
    }
  });

  // The CSV parser counted a CRLF inside a quoted cell as two line breaks: every row after a
  // multi-line note written on Windows was named by the line after its own.
  it("names a rejected CSV row by its own line after a quoted cell holding a CRLF", async () => {
    const [a, b, c] = [wireReceipt(), wireReceipt(), wireReceipt()];
    const text = [
      "job_id,escrow_tx,model,tag_note",
      `${a.job_id},${a.escrow_tx},qwen3-8b,"first\r\nsecond\r\nthird"`,
      `${b.job_id},not-a-signature,qwen3-8b,plain`,
      "",
      `${c.job_id},${c.escrow_tx},qwen3-8b,"one\rtwo\nthree"`,
      `${String(c.job_id).replace("job_", "job_x")},bad,qwen3-8b,last`,
    ].join("\r\n");
    const bytes = Buffer.from(`${text}\r\n`);
    // Whole, and a byte at a time, so a CRLF split across chunks counts once.
    for (const chunks of [[bytes], [...bytes].map((byte) => Buffer.from([byte]))]) {
      const summary = await importReceipts(createTestStore(), Readable.from(chunks));
      expect(summary.rejected.map((r) => [r.line, r.field])).toEqual([
        [5, "escrow_tx"],
        [10, "escrow_tx"],
      ]);
      expect(summary.created).toBe(2);
    }
  });

  // Each chunk of a long line copied the whole line again: a 60 MB line took 3.5 minutes to
  // import, and a file of one endless line grew until the process ran out of memory.
  it("refuses a JSONL line longer than a POST /jobs body, naming it, and imports the rest", async () => {
    const [a, b] = [wireReceipt(), wireReceipt()];
    const long = JSON.stringify(wireReceipt({ model: "m".repeat(5 * 1024 * 1024) }));
    const bytes = Buffer.from(`${JSON.stringify(a)}\r\n${long}\r\n${JSON.stringify(b)}`);
    const chunks: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += 65_536) chunks.push(bytes.subarray(at, at + 65_536));
    const summary = await importReceipts(createTestStore(), Readable.from(chunks));
    expect(summary.rejected).toEqual([
      {
        line: 2,
        field: "line",
        reason: `${long.length} bytes, longer than the 4194304 a receipt may take`,
      },
    ]);
    expect(summary).toMatchObject({ total: 3, created: 2 });
  });
});

describe("the choices a request asked for", () => {
  it("imports a CSV n column as a number, and names one outside 1 to 128", async () => {
    const store = createTestStore();
    const [a, b, c] = [wireReceipt(), wireReceipt(), wireReceipt()];
    const line = (r: typeof a, n: string) =>
      csvLine([r.job_id, r.escrow_tx, r.settlement_tx, r.worker, "qwen3-8b", 100, n] as string[]);
    const rows = [
      "job_id,escrow_tx,settlement_tx,worker,model,max_tokens,n",
      line(a, "4"),
      line(b, "1"),
      line(c, "129"),
    ];
    const summary = await importReceipts(store, Readable.from([rows.join("\n")]));
    expect(summary.created).toBe(2);
    expect(summary.rejected).toEqual([expect.objectContaining({ line: 4, field: "n" })]);
    const choices = Object.fromEntries(
      store.db
        .select()
        .from(jobs)
        .all()
        .map((j) => [j.jobId, j.choices]),
    );
    // One choice is the default, stored as none.
    expect(choices).toEqual({ [String(a.job_id)]: 4, [String(b.job_id)]: null });
  });
});

// A rejected row whose quoted cell held line breaks was named by its last line: whoever opened
// the file at that line found the end of a note, not the row to fix.
describe("a CSV row over several lines", () => {
  it("is named by the line it starts on, after blank lines too, and so is where reading stopped", async () => {
    const [a, b, c, d] = [wireReceipt(), wireReceipt(), wireReceipt(), wireReceipt()];
    const text = [
      "job_id,escrow_tx,model,tag_note",
      `${a.job_id},${a.escrow_tx},qwen3-8b,one`,
      `${b.job_id},not-a-signature,qwen3-8b,"first\r\nsecond"`,
      "",
      "",
      `${c.job_id},bad,qwen3-8b,"p\nq\rr"`,
      `${d.job_id},${d.escrow_tx},qwen3-8b,"two\nlines"`,
      `job_e,"unclosed`,
      "more",
    ].join("\r\n");
    const bytes = Buffer.from(`${text}\r\n`);
    for (const chunks of [[bytes], [...bytes].map((byte) => Buffer.from([byte]))]) {
      const summary = await importReceipts(createTestStore(), Readable.from(chunks));
      expect(summary.rejected.map((r) => [r.line, r.field])).toEqual([
        [3, "escrow_tx"],
        [7, "escrow_tx"],
        [12, "file"],
      ]);
      expect(summary.created).toBe(2);
    }
  });
});

// A CSV row had no bound where a JSONL line has 4 MiB: a 60 MB row took 330 MB and 16 s, and a
// file of one endless row grew until the process ran out of memory, saying nothing. Then it
// stopped the import there, leaving every receipt after it unread.
describe("a CSV row longer than a POST /jobs body", () => {
  it("is refused naming its line, and the rows before and after it are imported", async () => {
    const [a, b] = [wireReceipt(), wireReceipt()];
    const bytes = Buffer.from(
      [
        "job_id,escrow_tx,model",
        `${a.job_id},${a.escrow_tx},qwen3-8b`,
        `job_long,"${"x".repeat(5 * 1024 * 1024)}",qwen3-8b`,
        `${b.job_id},${b.escrow_tx},qwen3-8b`,
      ].join("\n"),
    );
    const chunks: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += 65_536) chunks.push(bytes.subarray(at, at + 65_536));
    const summary = await importReceipts(createTestStore(), Readable.from(chunks));
    expect(summary.rejected).toEqual([
      {
        line: 3,
        field: "line",
        reason: "a CSV row longer than the 4194304 bytes a receipt may take",
      },
    ]);
    expect(summary).toMatchObject({ total: 3, created: 2 });
  });
});

// The parser's own iterator threw its error at once, dropping the rows parsed before it and not
// yet taken: a quote closed mid-cell lost the receipts before it, neither imported nor named.
describe("a CSV syntax error in the middle of a file", () => {
  it("keeps every row before it, and names the row where reading stopped", async () => {
    const store = createTestStore();
    const good = Array.from({ length: 30 }, () => wireReceipt());
    const rows = good.map((r) => `${r.job_id},${r.escrow_tx}\n`);
    const after = wireReceipt();
    const text = `job_id,escrow_tx\n${rows.join("")}job_q,"sig"nature\n${after.job_id},${after.escrow_tx}\n`;
    const summary = await importReceipts(store, Readable.from([text]), { format: "csv" });
    expect(summary.created).toBe(30);
    expect(summary.rejected).toEqual([
      expect.objectContaining({
        line: 32,
        field: "file",
        reason: expect.stringContaining("CSV syntax"),
      }),
    ]);
  });
});

// One overlong row (a note pasted into a cell) stopped a CSV import: the receipts after it were
// never read, where a JSONL line as long costs only itself.
describe("CSV rows after one longer than a POST /jobs body", () => {
  const big = "x".repeat(4 * 1024 * 1024 + 10);
  const chunked = (bytes: Buffer, size: number) => {
    const chunks: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.subarray(at, at + size));
    return chunks;
  };

  it("keep their own line numbers after a long row holding line breaks, with CRLF", async () => {
    const [a, b, c] = [wireReceipt(), wireReceipt(), wireReceipt()];
    const text = [
      "job_id,escrow_tx,model,tag_note",
      `${a.job_id},${a.escrow_tx},qwen3-8b,one`,
      `job_long,sig,qwen3-8b,"a\r\nb""${big}\nc\rd"`,
      `${b.job_id},not-a-signature,qwen3-8b,two`,
      "",
      `${c.job_id},${c.escrow_tx},qwen3-8b,"three, ""quoted"""`,
    ].join("\r\n");
    const bytes = Buffer.from(`${text}\r\n`);
    // Chunk sizes that cut a CRLF in two, inside the long row and at its end.
    const rowEnd = bytes.indexOf("\r\n", bytes.indexOf(big) + big.length);
    for (const size of [65_536, 7_777, rowEnd + 1]) {
      const summary = await importReceipts(createTestStore(), Readable.from(chunked(bytes, size)));
      expect(summary.rejected.map((r) => [r.line, r.field, r.reason])).toEqual([
        [3, "line", "a CSV row longer than the 4194304 bytes a receipt may take"],
        [7, "escrow_tx", expect.any(String)],
      ]);
      expect(summary).toMatchObject({ total: 4, created: 2 });
    }
  });

  it("names a quote left open that runs past the bound, keeping the rows before it", async () => {
    const a = wireReceipt();
    const text = `job_id,escrow_tx\n${a.job_id},${a.escrow_tx}\njob_q,"open\n${big}\n`;
    const summary = await importReceipts(
      createTestStore(),
      Readable.from(chunked(Buffer.from(text), 65_536)),
    );
    expect(summary.rejected).toEqual([
      {
        line: 3,
        field: "line",
        reason:
          "a CSV row longer than the 4194304 bytes a receipt may take, running to the end of the file (a quote left open?)",
      },
    ]);
    expect(summary).toMatchObject({ total: 2, created: 1 });
  });
});

// `import <(zcat receipts.jsonl.gz)` or `import /dev/stdin` names a pipe: it was refused as "not
// a file", exit 2, and the day's receipts were not imported. A pipe is read as stdin is.
describe("import from a named pipe", () => {
  it("reads the receipts a pipe carries; a device is still refused", async () => {
    const dir = mkdtempSync(join(tmpdir(), "import-fifo-"));
    const fifo = join(dir, "receipts.jsonl");
    execFileSync("mkfifo", [fifo]);
    const store = createTestStore();
    const io = quietIo();
    const text = `${JSON.stringify(wireReceipt())}\n${JSON.stringify(wireReceipt())}\n`;
    const [code] = await Promise.all([
      runImportCommand(store, fifo, {}, io),
      writeFile(fifo, text),
    ]);
    expect(code).toBe(0);
    expect(store.db.select().from(jobs).all()).toHaveLength(2);
    await expect(runImportCommand(store, "/dev/zero", {}, io)).rejects.toMatchObject({
      message: "/dev/zero: not a file",
    });
    // `import "$FILE"` with FILE unset.
    await expect(runImportCommand(store, "", {}, io)).rejects.toMatchObject({
      message: "file: empty path (give a file, or - for stdin)",
    });
  });
});

// A UTF-16 file without a byte-order mark was read as UTF-8: every JSONL line refused as "not
// valid JSON" (exit 1, "2 receipts" for one), a CSV refused as lacking job_id, which an editor
// showed in its header.
describe("import of UTF-16 or UTF-32 text without a byte-order mark", () => {
  it("is refused whole, naming the encoding; the command exits 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "import-unmarked-"));
    const r = wireReceipt();
    const jsonl = `${JSON.stringify(r)}\r\n`;
    const csv = `job_id,escrow_tx\r\n${r.job_id},${r.escrow_tx}\r\n`;
    const utf32 = (text: string, le: boolean) => {
      const out = Buffer.alloc(text.length * 4);
      for (let i = 0; i < text.length; i++) {
        if (le) out.writeUInt32LE(text.charCodeAt(i), i * 4);
        else out.writeUInt32BE(text.charCodeAt(i), i * 4);
      }
      return out;
    };
    const files: [string, Buffer, string][] = [
      ["receipts.jsonl", Buffer.from(jsonl, "utf16le"), "UTF-16 LE"],
      ["receipts.csv", Buffer.from(csv, "utf16le"), "UTF-16 LE"],
      ["receipts-be.csv", Buffer.from(csv, "utf16le").swap16(), "UTF-16 BE"],
      ["receipts32.jsonl", utf32(jsonl, true), "UTF-32 LE"],
      ["receipts32be.jsonl", utf32(jsonl, false), "UTF-32 BE"],
    ];
    const store = createTestStore();
    for (const [name, bytes, encoding] of files) {
      const file = join(dir, name);
      writeFileSync(file, bytes);
      await expectRefusedWhole(store, file, `the file looks like ${encoding} text`);
    }
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
    // UTF-8 with a byte-order mark is still read.
    const file = join(dir, "utf8.csv");
    writeFileSync(file, `\uFEFF${csv}`);
    const io = quietIo();
    expect(await runImportCommand(store, file, {}, io)).toBe(0);
  });
});

// A JSON array (`jq -s`, an API dump) was refused as "the CSV header is not CSV"; one receipt
// pretty-printed over 13 lines was "13 receipts, 13 rejected", each "not valid JSON".
describe("import of a JSON array or a pretty-printed JSON document", () => {
  it("is refused whole, saying it is no JSON Lines; the command exits 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "import-document-"));
    const files: [string, string, string][] = [
      ["dump.json", JSON.stringify([wireReceipt(), wireReceipt()]), "a JSON array"],
      ["dump.jsonl", `  ${JSON.stringify([wireReceipt()])}\n`, "a JSON array"],
      ["one.json", `${JSON.stringify(wireReceipt(), null, 2)}\n`, "a JSON document spread"],
      ["one-crlf.json", `\uFEFF{\r\n  "job_id": "x"\r\n}\r\n`, "a JSON document spread"],
    ];
    const store = createTestStore();
    for (const [name, text, what] of files) {
      const file = join(dir, name);
      writeFileSync(file, text);
      await expectRefusedWhole(store, file, `the file is ${what}`);
    }
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
    // JSON Lines, one byte at a time from a pipe, is still read.
    const text = `${JSON.stringify(wireReceipt())}\n${JSON.stringify(wireReceipt())}\n`;
    const bytes = [...Buffer.from(text)].map((b) => Buffer.from([b]));
    const summary = await importReceipts(store, Readable.from(bytes));
    expect(summary).toMatchObject({ total: 2, created: 2, rejected: [] });
  });
});

// A JSONL file told `--format csv` was refused as "the CSV header is not CSV (Invalid Opening
// Quote)", and a CSV file told jsonl had each of its lines refused as not valid JSON (exit 1):
// neither named the format given nor what the file holds.
describe("import of a file in the other format than the one given", () => {
  it("is refused whole, naming how the format was given and quoting the first line; exit 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "import-wrong-format-"));
    const [a, b] = [wireReceipt(), wireReceipt()];
    const jsonl = `${JSON.stringify(a)}\n${JSON.stringify(b)}\n`;
    const csv = `job_id,escrow_tx\n${a.job_id},${a.escrow_tx}\n${b.job_id},${b.escrow_tx}\n`;
    const store = createTestStore();
    const cases: [string, string, string | undefined, string][] = [
      [
        "receipts.jsonl",
        jsonl,
        "csv",
        `does not look like CSV (--format csv): its first line, ${JSON.stringify(a).slice(0, 60)}..., is a JSON object`,
      ],
      [
        "receipts.csv",
        csv,
        "jsonl",
        "does not look like JSON Lines (--format jsonl): its first line, job_id,escrow_tx, looks like a CSV header",
      ],
      ["export.csv", jsonl, undefined, "does not look like CSV (its .csv extension)"],
      ["export.jsonl", csv, undefined, "does not look like JSON Lines (its .jsonl extension)"],
    ];
    for (const [name, text, format, why] of cases) {
      const file = join(dir, name);
      writeFileSync(file, text);
      const flags = format === undefined ? {} : { format };
      await expect(runImportCommand(store, file, flags, quietIo()), name).rejects.toMatchObject({
        code: "validation_failed",
        details: { field: "file" },
        message: expect.stringMatching(/; nothing was imported$/),
      });
      await expect(runImportCommand(store, file, flags, quietIo()), name).rejects.toThrow(why);
    }
    expect(store.db.select().from(jobs).all()).toHaveLength(0);
    // Each told its own format, both are read.
    expect(await runImportCommand(store, join(dir, "receipts.jsonl"), {}, quietIo())).toBe(0);
    const again = await importReceipts(store, Readable.from([csv]), { format: "csv" });
    expect(again).toMatchObject({ total: 2, duplicate: 2, rejected: [] });
  });
});
