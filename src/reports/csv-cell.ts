import { printable } from "../printable-text.js";

/**
 * The one CSV cell rule of every CSV the tool writes (reconciliation report, ledger statement).
 * Text in those files comes from receipts and from the chain (a memo is whatever the operator
 * wrote), and a finance team opens them in a spreadsheet: a cell that a spreadsheet would run
 * as a formula is prefixed with `'` so it stays text (OWASP CSV injection).
 */

/** A plain decimal number (money and counts are decimal strings): never a formula. */
const plainNumber = /^-?\d+(\.\d+)?$/;

/**
 * Cells a spreadsheet may run: one whose first non-space character is = + - @ (or their
 * full-width forms, which some spreadsheets fold to ASCII), or that starts with a tab or CR.
 */
const formulaLike = /^(?:[\t\r]|\s*[=+\-@\uff1d\uff0b\uff0d\uff20])/;

/** One CSV field: guarded when it reads as a formula, quoted per RFC 4180 when it must be. */
export function csvCell(value: string | number | bigint | null): string {
  if (value === null) return "";
  const raw = String(value);
  const text =
    typeof value === "string" && formulaLike.test(raw) && !plainNumber.test(raw) ? `'${raw}` : raw;
  // `;` too: a spreadsheet in a locale whose list separator is `;` splits on it.
  return /[",;\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * Text a spreadsheet would read as a number when it opens the file: digits (a key fingerprint
 * of 16 decimal digits becomes 1.23457E+15, its last digit and leading zeros lost), a hex
 * fingerprint with one `e` (`1234567890123e45` is 1.23E+57), a sign, decimals, `%`, thousands
 * separators, a currency sign or accounting parentheses.
 */
const numberLike =
  /^\s*\(?[+-]?[$\u20ac\u00a3]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?%?\)?\s*$/i;

/**
 * Text a spreadsheet turns into a date, a time, a fraction or a boolean when it opens the file
 * (each a number or a value of its own underneath): a model named `3-8` opened as 8 March,
 * `1/2` as 2 January or a half, `1:30` as a time, `true` as TRUE. A group of the report so read
 * is no longer the name the JSON gives, and a sum by it joins other rows.
 */
const month = "(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*";
const valueLike = new RegExp(
  [
    // 3-8, 1/2, 2026-11-01, 11/01/2026, 1.2.2026
    "^\\s*\\d{1,4}([-/.])\\d{1,2}(?:\\1\\d{1,4})?\\s*$",
    // 3 pm, 12:00 PM, 12:00:05 a.m.
    "^\\s*\\d{1,2}(?::\\d{1,2}(?::\\d{1,2}(?:\\.\\d+)?)?)?\\s*[ap]\\.?m\\.?\\s*$",
    // 1:30, 12:00:05
    "^\\s*\\d{1,2}:\\d{1,2}(?::\\d{1,2}(?:\\.\\d+)?)?\\s*$",
    // 1 1/2
    "^\\s*[+-]?\\d+\\s+\\d+/\\d+\\s*$",
    // Jan-5, Jan 5, 5-Jan, 5 January 2026
    `^\\s*${month}[-/ .]*\\d{1,4}(?:[-/ ,.]+\\d{1,4})?\\s*$`,
    `^\\s*\\d{1,4}[-/ .]*${month}(?:[-/ ,.]+\\d{1,4})?\\s*$`,
    "^\\s*(?:true|false)\\s*$",
  ].join("|"),
  "i",
);

/**
 * A cell of a text column (a group name, an address, a job id, a memo): guarded like any
 * cell, and also when a spreadsheet would turn it into a number (or a date, a time, a
 * boolean), with the same leading `'`.
 */
export function csvTextCell(value: string | null): string {
  if (value === null) return "";
  return numberLike.test(value) || valueLike.test(value) ? csvCell(`'${value}`) : csvCell(value);
}

/**
 * A cell naming a group of the reports (a model, a worker, a key fingerprint): a text cell
 * whose characters that show as nothing are written as their `\u200b` escapes (`printable`),
 * so a name stored before such names were refused is not read as the name it looks like.
 */
export function csvNameCell(value: string | null): string {
  return csvTextCell(value === null ? null : printable(value));
}
