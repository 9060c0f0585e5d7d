import { describe, expect, it } from "vitest";
import { parseZonedDateTime, timeZoneOf, zoneDateOf, zoneDayStarts } from "../src/instant.js";
import { parseReceiptInput } from "../src/recorder/receipt-input.js";
import { instantRefusal, parseInstant, windowFromFlags } from "../src/reports/period.js";
import { createTestApi } from "./support/audit-api-app.js";
import { address, jobId, signature } from "./support/recorder-fixtures.js";

describe("instants", () => {
  it("reads date-times with a zone exactly", () => {
    expect(parseZonedDateTime("2026-11-25T10:00:00Z")).toBe(Date.UTC(2026, 10, 25, 10));
    expect(parseZonedDateTime("2026-11-25T12:00:00+02:00")).toBe(Date.UTC(2026, 10, 25, 10));
  });

  it("reads a time between two milliseconds as the one it falls in, and refuses it as a period bound", () => {
    const last = Date.UTC(2026, 10, 29, 23, 59, 59, 999);
    expect(parseZonedDateTime("2026-11-29T23:59:59.999Z")).toBe(last);
    expect(parseZonedDateTime("2026-11-29T23:59:59.9990Z")).toBe(last);
    expect(parseZonedDateTime("2026-11-29T23:59:59.9999Z")).toBe(last);
    expect(parseInstant("2026-11-29T23:59:59.9990Z")).toBe(last);
    expect(parseInstant("2026-11-29T23:59:59.9999Z")).toBeNull();
  });

  it("refuses dates that do not exist instead of shifting them into another day", () => {
    expect(parseZonedDateTime("2026-02-30T00:00:00Z")).toBeNull();
    expect(parseZonedDateTime("2026-11-25T24:00:00Z")).toBeNull();
    expect(parseInstant("2026-02-30T00:00:00Z")).toBeNull();
    expect(parseInstant("2026-02-30")).toBeNull();
  });

  it("reads an epoch integer of up to 10 digits as seconds, a longer one as milliseconds", () => {
    const at = Date.UTC(2026, 10, 21);
    expect(parseInstant(String(at / 1000))).toBe(at);
    expect(parseInstant(String(at))).toBe(at);
    expect(parseInstant("0")).toBe(0);
  });

  it("refuses an epoch number longer than 13 digits: no time an answer can name back", () => {
    // 15 digits of milliseconds is the year 33658, which ISO 8601 answers cannot carry.
    expect(parseInstant("999999999999999")).toBeNull();
    expect(parseInstant("99999999999999")).toBeNull();
    expect(parseInstant("9999999999999")).toBe(9_999_999_999_999);
  });

  it("refuses a date-time without a zone rather than read it in the server's zone", () => {
    expect(parseZonedDateTime("2026-11-25T10:00:00")).toBeNull();
    const parsed = parseReceiptInput({
      job_id: jobId(),
      escrow_tx: signature(),
      worker: address(),
      created_at: "2026-11-25T10:00:00",
    });
    expect(parsed).toMatchObject({ ok: false, field: "created_at" });
  });
});

describe("a date written in ISO 8601's basic format, as `date +%Y%m%d` prints it", () => {
  it("refuses --from a date and --to a date-time with --time-zone, naming --to and what to give", () => {
    expect(() =>
      windowFromFlags({ from: "2026-11-01", to: "2026-12-01T00:00:00Z" }, 0, "Europe/Paris"),
    ).toThrow(
      /^--to: with --time-zone Europe\/Paris and --from a date \(2026-11-01, .*\), give --to as a date too/,
    );
    expect(windowFromFlags({ from: "2026-11-01", to: "2026-12-01" }, 0, "Europe/Paris")).toEqual({
      from: Date.UTC(2026, 9, 31, 23),
      to: Date.UTC(2026, 10, 30, 23),
    });
  });

  it("is refused, naming the form to write, rather than read as epoch seconds in 1970", () => {
    // 20261101 seconds after the epoch is 1970-08-23: a nightly `verify --from $(date +%Y%m%d)`
    // judged a window of 1970 and exited 0, and a report of such a period summed nothing.
    expect(parseInstant("20261101")).toBeNull();
    expect(parseInstant("20260230")).toBeNull();
    const now = Date.UTC(2026, 11, 2);
    expect(() => windowFromFlags({ from: "20261101", to: "20261201" }, now)).toThrow(
      /--from: .*2026-11-01/,
    );
    expect(() => windowFromFlags({ from: "2026-11-01", to: "20261201" }, now)).toThrow(
      /--to: .*2026-12-01/,
    );
    // Eight digits that are no date are still epoch seconds, and so is every other length.
    expect(parseInstant("99999999")).toBe(99_999_999_000);
    expect(parseInstant("1793491200")).toBe(Date.UTC(2026, 10, 1));
  });
});

describe("a month written in ISO 8601's basic format, as `date +%Y%m` prints it", () => {
  it("is refused, naming the first day to write, rather than read as epoch seconds in 1970", () => {
    // 202611 seconds after the epoch is 1970-01-03: `verify --from $(date +%Y%m)` judged a
    // window of 1970 and exited 0, as the eight-digit date did.
    expect(parseInstant("202611")).toBeNull();
    expect(() =>
      windowFromFlags({ from: "202611", to: "2026-12-01" }, Date.UTC(2026, 11, 2)),
    ).toThrow(/--from: .*2026-11-01/);
    // Six digits that are no month are still epoch seconds.
    expect(parseInstant("202613")).toBe(202_613_000);
    expect(parseInstant("123456")).toBe(123_456_000);
  });

  // It was told "a date without its dashes ... (eight digits are not read as epoch seconds)":
  // six digits called eight, a month called a date.
  it("is said to be a month of six digits, on the CLI and in the API", async () => {
    const now = Date.UTC(2026, 11, 2);
    let message = "";
    try {
      windowFromFlags({ from: "202611", to: "2026-12-01" }, now);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("a month without its dash: write its first day 2026-11-01");
    expect(message).toContain("six digits");
    expect(message).not.toContain("eight digits");
    expect(instantRefusal("20261101")).toContain("eight digits");
    const api = await createTestApi();
    const res = await api.get("/reports/reconciliation?from=202611&to=2026-12-01");
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { field: string; message: string } };
    expect(body.error.field).toBe("from");
    expect(body.error.message).toBe(
      "from: a month without its dash: write its first day 2026-11-01 (six digits are not read as epoch seconds)",
    );
  });
});

// `from=0001-01-01` was answered "not a date (YYYY-MM-DD)": Date.UTC read year 1 as 1901. A
// date before 1970, a day the calendar lacks, 14 digits and `--since 0h` each say what is wrong.
describe("an instant or duration at the edges", () => {
  it("names a date before 1970, a day the calendar lacks and an epoch integer too long", async () => {
    expect(parseZonedDateTime("0001-01-01T00:00:00Z")).toBe(Date.parse("0001-01-01T00:00:00Z"));
    expect(parseZonedDateTime("0099-12-31T00:00:00Z")).toBe(Date.parse("0099-12-31T00:00:00Z"));
    for (const text of ["0001-01-01", "0099-06-01", "1969-12-31", "1969-12-31T23:59:59Z", "-1"]) {
      expect(parseInstant(text), text).toBeNull();
      expect(instantRefusal(text)).toContain(`${text} is before 1970-01-01`);
    }
    expect(parseInstant("1970-01-01")).toBe(0);
    expect(instantRefusal("2026-02-30")).toContain("2026-02-30 is no day of the calendar");
    expect(instantRefusal("2026-13-01T00:00:00Z")).toContain("2026-13-01 is no day");
    expect(instantRefusal("99999999999999")).toContain("has 14 digits: an epoch integer is");
    expect(instantRefusal("tomorrow")).toBe("not a date or ISO 8601 date-time: tomorrow");

    const api = await createTestApi();
    for (const [query, said] of [
      ["from=0001-01-01&to=2026-11-02", "from: 0001-01-01 is before 1970-01-01"],
      ["from=2026-11-01&to=2026-02-30", "to: 2026-02-30 is no day of the calendar"],
      ["from=2026-11-01&to=99999999999999", "to: 99999999999999 has 14 digits"],
      ["from=-1&to=2026-11-02", "from: -1 is before 1970-01-01"],
    ]) {
      const res = await api.get(`/reports/reconciliation?${query}`);
      expect(res.status, query).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain(said);
    }
    const now = Date.UTC(2026, 11, 2);
    expect(() => windowFromFlags({ from: "0001-01-01" }, now)).toThrow(
      /--from: 0001-01-01 is before 1970-01-01/,
    );
    expect(() => windowFromFlags({ since: "0h" }, now)).toThrow(/--since: must be more than 0/);
    expect(() => windowFromFlags({ since: "24 hours" }, now)).toThrow(
      /--since: not a duration like 24h/,
    );
  });
});

// Receipts are dated to the millisecond. A period bound between two (`from=…00.1231`) could not
// part jobs exactly: read as .123 it took in a job of .1230, read as .124 the same bound as `to`
// took in a job of .1235. A receipt of 23:59:59.9999 was dated the next day's midnight (as ISO
// text) or rounded to it (as epoch seconds) and counted in the next day's report.
describe("a time finer than a millisecond", () => {
  const last = Date.UTC(2026, 10, 29, 23, 59, 59, 999);

  it("is refused as a period bound, naming the field, in the API and the CLI", async () => {
    const api = await createTestApi();
    for (const [query, field] of [
      ["from=2026-11-29T10:00:00.1231Z&to=2026-11-30", "from"],
      ["from=2026-11-29&to=2026-11-29T10:00:00.1231Z", "to"],
    ] as const) {
      const res = await api.get(`/reports/reconciliation?${query}`);
      expect(res.status, query).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toContain(
        `${field}: 2026-11-29T10:00:00.1231Z is finer than a millisecond`,
      );
    }
    const now = Date.UTC(2026, 11, 2);
    expect(() => windowFromFlags({ from: "2026-11-29T10:00:00.1231Z" }, now)).toThrow(
      /--from: 2026-11-29T10:00:00.1231Z is finer than a millisecond/,
    );
    expect(() =>
      windowFromFlags({ from: "2026-11-29", to: "2026-11-29T10:00:00.1231+00:00" }, now),
    ).toThrow(/--to: .* is finer than a millisecond/);
    // Zeros past the millisecond name the millisecond exactly.
    expect(windowFromFlags({ from: "2026-11-29T10:00:00.123000Z" }, now).from).toBe(
      Date.UTC(2026, 10, 29, 10, 0, 0, 123),
    );
  });

  it("dates a receipt in the millisecond it falls in, on its own day", () => {
    for (const created_at of ["2026-11-29T23:59:59.9999Z", 1795996799.9996, "1795996799.9996"]) {
      const parsed = parseReceiptInput({
        job_id: jobId(),
        escrow_tx: signature(),
        worker: address(),
        created_at,
      });
      expect(parsed, String(created_at)).toMatchObject({ ok: true });
      expect((parsed as { receipt: { createdAt: number } }).receipt.createdAt).toBe(last);
    }
  });
});

describe("a time zone's days", () => {
  it("start each after the one before where the clocks skipped a date (Apia, 2011-12-30)", () => {
    // Samoa went from 23:59:59 on December 29th (-10:00) to 00:00 on December 31st (+14:00).
    const zone = "Pacific/Apia";
    const from = Date.UTC(2011, 11, 28, 10);
    const starts = zoneDayStarts(zone, from, Date.UTC(2011, 11, 31, 10));
    expect(starts.map((t) => zoneDateOf(zone, t))).toEqual([
      "2011-12-28",
      "2011-12-29",
      "2011-12-31",
    ]);
    expect(starts).toEqual([from, Date.UTC(2011, 11, 29, 10), Date.UTC(2011, 11, 30, 10)]);
  });

  it.each(["UTC", "utc", "Etc/UTC", "Etc/UCT", "GMT", "Etc/GMT+0", "Etc/Universal", "Zulu"])(
    "names %s, UTC at every instant, UTC",
    (name) => {
      expect(timeZoneOf(name)).toBe("UTC");
    },
  );

  it("keeps a zone that is UTC only part of the time, or at another fixed offset, its own", () => {
    expect(timeZoneOf("Europe/London")).toBe("Europe/London");
    expect(timeZoneOf("Africa/Abidjan")).toBe("Africa/Abidjan");
    expect(timeZoneOf("Etc/GMT+5")).toBe("Etc/GMT+5");
    expect(timeZoneOf("europe/london")).toBe("Europe/London");
  });
});
