import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { AppError } from "./errors.js";

/**
 * Writes `text` to `path` whole or not at all: into a file beside it, then renamed over it. A
 * full disk midway (or a crash) leaves the report that was there, never an empty or cut one.
 */
export function writeFileWhole(path: string, text: string): void {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(temporary, "w");
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

/**
 * Refuses an `--out` the output could not be written to (a folder, a file or folder without
 * write permission, a folder that is not there), checked before the command works: found only
 * at the end, the error would lose a nightly summary that may have taken half an hour, and it
 * would read as the rename's raw error.
 */
export function refuseUnwritableOut(out: string): void {
  const bad = (message: string) =>
    new AppError("validation_failed", `--out: ${message}`, { field: "out" });
  const path = resolve(out);
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat?.isDirectory()) throw bad(`${out} is a folder; give a file name`);
  const folder = dirname(path);
  if (!stat && !existsSync(folder)) throw bad(`no folder ${folder}`);
  // The summary is written beside the file and renamed over it: the folder must take a file.
  for (const [target, name] of [
    ...(stat ? [[path, out] as const] : []),
    [folder, folder] as const,
  ]) {
    try {
      accessSync(target, constants.W_OK);
    } catch {
      throw bad(`${name} is not writable`);
    }
  }
}
