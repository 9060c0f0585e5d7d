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
