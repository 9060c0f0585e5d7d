import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";

/** How long a read waits for a pipe's writer to come or to send more before giving up. */
const PIPE_WAIT_MS = 5_000;

/**
 * The text of the file at `path`, or null when it holds more than `maxBytes`. Read in pieces up
 * to that bound: a device (`/dev/zero`) or an endless pipe named where a small file belongs was
 * read whole, growing the process by gigabytes a minute while its event loop, blocked, ignored
 * SIGTERM. Opened without blocking: a named pipe no one writes to held the open (and the
 * process, `--timeout` and SIGTERM unheard) for ever. A pipe's writer is now waited for, and
 * each piece it sends, `PIPE_WAIT_MS` at most: past that the read fails (`ETIMEDOUT`). Other
 * errors opening or reading the file are thrown as `fs` throws them.
 */
export function readTextAtMost(path: string, maxBytes: number): string | null {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    // A named pipe opened before its writer reads as ended: its writer is waited for.
    const pipe = fstatSync(fd).isFIFO();
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    let waitedMs = 0;
    const wait = () => {
      if (waitedMs >= PIPE_WAIT_MS) {
        throw Object.assign(
          new Error(`${path}: nothing came from it for ${PIPE_WAIT_MS / 1000} s`),
          { code: "ETIMEDOUT" },
        );
      }
      // Nothing to do meanwhile: this is a start-up read, before any server listens.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      waitedMs += 20;
    };
    while (length <= maxBytes) {
      let read: number;
      try {
        read = readSync(fd, buffer, length, buffer.length - length, null);
      } catch (error) {
        if ((error as { code?: unknown }).code !== "EAGAIN") throw error;
        wait();
        continue;
      }
      if (read === 0) {
        if (pipe && length === 0) {
          wait();
          continue;
        }
        return buffer.toString("utf8", 0, length);
      }
      length += read;
      waitedMs = 0;
    }
    return null;
  } finally {
    closeSync(fd);
  }
}

/**
 * What is wrong with `path` when a look at it failed with `error`, said plainly, or null for any
 * other failure. Node's own text ("ENOTDIR: not a directory, stat '...'") named the code, not
 * the cause, and quoted a path too long for the system whole.
 */
export function pathProblem(error: unknown, path: string): string | null {
  const code = (error as { code?: unknown } | null)?.code;
  const shown = path.length > 200 ? `${path.slice(0, 200)}...` : path;
  switch (code) {
    case "ENOTDIR":
      return `${shown}: no such file (a part of its path is a file, not a folder)`;
    case "ELOOP":
      return `${shown}: a loop of symbolic links`;
    case "ENAMETOOLONG":
      return `${shown}: the path (${path.length} characters) or a name in it is longer than this system takes`;
    default:
      return null;
  }
}
