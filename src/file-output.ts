import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fchownSync,
  fsyncSync,
  lstatSync,
  openSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { AppError } from "./errors.js";
import { pathProblem } from "./file-input.js";

/** Links followed at most, as the kernel does, before a loop of links is an error. */
const MAX_LINKS = 40;

/**
 * The file `--out` names, or undefined when the output goes to stdout: no `--out`, or `--out -`
 * (as `import -` reads stdin; a file named `-` is `--out ./-`). An empty `--out` is refused.
 */
export function outFile(out: string | undefined): string | undefined {
  // `--out "$FILE"` with FILE unset: stdout is not what was asked for (a cron job's report would
  // go to its mail, and the file it expects would stay yesterday's).
  if (out !== undefined && out.trim() === "") {
    throw new AppError("validation_failed", "--out: empty value", { field: "out" });
  }
  return out === undefined || out === "-" ? undefined : out;
}

/** Where `--out` is written, and whether into it directly instead of by a rename. */
interface OutputTarget {
  path: string;
  direct: boolean;
}

/** A folder as the kernel resolves it (every link on the way followed), or null if none. */
function realFolder(folder: string): string | null {
  try {
    return realpathSync.native(folder);
  } catch {
    return null;
  }
}

/** /proc (and /dev/fd, which links into it) holds open files, not files to replace. */
function isOpenFileLink(path: string): boolean {
  return /^\/(proc|dev\/fd)(\/|$)/.test(path);
}

/**
 * What `--out` really names. A symbolic link is followed to what it points at, which may not
 * exist yet (a dangling link is written through): replacing the link itself would leave its
 * target with yesterday's report while the link, made on purpose, is gone. Each link is read
 * in its own folder as the kernel resolves that folder, never as text: `a/link` -> `../r` with
 * `a` a link to `real/sub` names `real/r`, not `./r`. A named pipe, a device (/dev/full) or a
 * socket is written into, never replaced: a rename over one would put a plain file where the
 * pipe's reader or the device was. So is anything whose way goes through /proc (/dev/stdout,
 * /dev/fd/1): it stands for an open file, maybe a pipe, or a log the shell appends to.
 */
function outputTarget(out: string): OutputTarget {
  let path = out;
  for (let hops = 0; hops <= MAX_LINKS; hops++) {
    const folder = realFolder(dirname(path));
    if (folder === null) return { path: resolve(path), direct: false };
    path = join(folder, basename(path));
    if (isOpenFileLink(path)) return { path, direct: true };
    let stat: ReturnType<typeof lstatSync>;
    try {
      stat = lstatSync(path, { throwIfNoEntry: false });
    } catch (error) {
      const said = pathProblem(error, out);
      if (said === null) throw error;
      throw new AppError("validation_failed", `--out: ${said}`, { field: "out" });
    }
    if (!stat) return { path, direct: false };
    if (!stat.isSymbolicLink()) return { path, direct: !stat.isFile() && !stat.isDirectory() };
    // Not joined: joining would fold `x/..` as text, where the kernel goes through link `x`.
    const link = readlinkSync(path);
    path = isAbsolute(link) ? link : `${folder === "/" ? "" : folder}/${link}`;
  }
  throw new AppError("validation_failed", `--out: ${out} is a loop of symbolic links`, {
    field: "out",
  });
}

/**
 * Writes `text` to `path` whole or not at all: into a file beside it, then renamed over it. A
 * full disk midway (or a crash) leaves the report that was there, never an empty or cut one.
 * A symbolic link stays and its target is written the same way; a pipe or a device is written
 * into directly (there is no file to keep whole), and its write error (ENOSPC on /dev/full)
 * is thrown as any other.
 */
export function writeFileWhole(path: string, text: string): void {
  const { path: target, direct } = outputTarget(path);
  try {
    if (direct) writeInto(target, text, path);
    else writeThenRename(target, text);
  } catch (error) {
    if (error instanceof AppError) throw error;
    // The raw error (ENOSPC: no space left on device, write) names no file.
    throw new AppError(
      "internal",
      `--out: cannot write ${path}: ${error instanceof Error ? error.message : String(error)}`,
      { field: "out" },
      { cause: error },
    );
  }
}

/**
 * Writes into a pipe, a device or an open file of /proc. Appended, not truncated: /dev/stdout
 * sent to a log by `>>` opens that log anew here, and truncating it would cut what the log
 * held. A pipe or a device has nothing to truncate.
 */
function writeInto(target: string, text: string, out: string): void {
  const fd = ownDescriptor(target);
  if (fd !== null) {
    writeThrough(fd, text);
    return;
  }
  if (!statSync(target, { throwIfNoEntry: false })?.isFIFO()) {
    writeFileSync(target, text, { flag: "a" });
    return;
  }
  // Opening a pipe nobody reads waits for a reader, inside one synchronous call: no timer,
  // no --timeout, no signal handler would run again. Opened without waiting, a pipe with no
  // reader fails at once (ENXIO). The probe stays open while the pipe is opened to be written:
  // closed first, a reader such as `cat` would see the end of its input and leave.
  let probe: number;
  try {
    probe = openSync(target, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENXIO") throw error;
    throw new AppError(
      "validation_failed",
      `--out: nothing reads the named pipe ${out}; start its reader first`,
      { field: "out" },
    );
  }
  try {
    writeFileSync(target, text, { flag: "a" });
  } catch (error) {
    if (!readerLeft(error)) throw error;
  } finally {
    closeSync(probe);
  }
}

/**
 * A pipe whose reader stopped reading (`| head -3`) and closed it: the reader took what it
 * wanted, so the run goes on to its own exit code (a report's 0, `verify`'s 0 or 1), never the
 * 2 of a run that could not finish.
 */
function readerLeft(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === "EPIPE";
}

/**
 * The descriptor of this process that a /proc path names (/dev/stdout, /dev/fd/3 resolve so),
 * or null. It is written through rather than opened anew: a socket cannot be opened by path
 * (ENXIO), and stdout is one under systemd (the journal) and under Node's child_process.
 */
function ownDescriptor(target: string): number | null {
  const found = /^\/proc\/(\d+)\/(?:task\/\d+\/)?fd\/(\d+)$/.exec(target);
  return found && Number(found[1]) === process.pid ? Number(found[2]) : null;
}

/**
 * Every byte into an open descriptor, waiting out a non-blocking one that is full. Written
 * here, not through process.stdout: its write reports a failure (a full disk, a reader gone)
 * later, as an error event, after the command said the summary was written.
 */
function writeThrough(fd: number, text: string): void {
  const bytes = Buffer.from(text);
  let done = 0;
  while (done < bytes.length) {
    try {
      done += writeSync(fd, bytes, done);
    } catch (error) {
      if (readerLeft(error)) return;
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

function writeThenRename(target: string, text: string): void {
  const temporary = join(dirname(target), `.${basename(target)}.${process.pid}.tmp`);
  const old = statSync(target, { throwIfNoEntry: false });
  try {
    // A report replaced keeps the old file's mode (a `chmod 600` statement of money stays
    // private), and its owner when root runs the report for another user (best effort).
    const fd = openSync(temporary, "w", old ? 0o600 : 0o666);
    try {
      if (old) {
        if (process.getuid?.() === 0) {
          try {
            fchownSync(fd, old.uid, old.gid);
          } catch {
            // A file system without owners (a FAT mount) keeps the report all the same.
          }
        }
        fchmodSync(fd, old.mode & 0o777);
      }
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, target);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}

/**
 * Refuses an `--out` the output could not be written to (a folder, a file or folder without
 * write permission, a folder that is not there), checked before the command works: found only
 * at the end, the error would lose a nightly summary that may have taken half an hour, and it
 * would read as the rename's raw error. A link is judged by what it points at.
 */
export function refuseUnwritableOut(out: string): void {
  const bad = (message: string) =>
    new AppError("validation_failed", `--out: ${message}`, { field: "out" });
  const { path, direct } = outputTarget(out);
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat?.isDirectory()) throw bad(`${out} is a folder; give a file name`);
  const folder = dirname(path);
  if (!stat && !existsSync(folder)) throw bad(`no folder ${folder}`);
  // A file's summary is written beside it and renamed over it: the folder must take a file.
  // A pipe or a device is written into, so only it must be writable.
  for (const [target, name] of [
    ...(stat ? [[path, out] as const] : []),
    ...(direct ? [] : [[folder, folder] as const]),
  ]) {
    try {
      accessSync(target, constants.W_OK);
    } catch {
      throw bad(`${name} is not writable`);
    }
  }
}
