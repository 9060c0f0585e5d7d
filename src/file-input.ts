import { closeSync, openSync, readSync } from "node:fs";

/**
 * The text of the file at `path`, or null when it holds more than `maxBytes`. Read in pieces up
 * to that bound: a device (`/dev/zero`) or an endless pipe named where a small file belongs was
 * read whole, growing the process by gigabytes a minute while its event loop, blocked, ignored
 * SIGTERM. Errors opening or reading the file are thrown as `fs` throws them.
 */
export function readTextAtMost(path: string, maxBytes: number): string | null {
  const fd = openSync(path, "r");
  try {
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    while (length <= maxBytes) {
      const read = readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) return buffer.toString("utf8", 0, length);
      length += read;
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
