import { readlinkSync } from "node:fs";
import { hostname } from "node:os";

let cached: string | undefined;

/**
 * The name of "this host" in lease and run owners: the hostname, plus on Linux the PID
 * namespace (`myhost@pid:[4026531836]`). Two containers sharing the host's network (and so its
 * hostname) have PID namespaces of their own, where a pid means another process: an owner is
 * judged by its pid only when it was written in this namespace.
 */
export function thisHost(): string {
  if (cached === undefined) {
    let namespace = "";
    try {
      namespace = readlinkSync("/proc/self/ns/pid");
    } catch {
      // Not Linux (or no /proc): the hostname alone.
    }
    cached = namespace ? `${hostname()}@${namespace}` : hostname();
  }
  return cached;
}

/**
 * Whether the process `pid` of host `host` (as `thisHost()` wrote it) is known to be gone: the
 * host is this one and no process has that pid. An owner written before the namespace was part
 * of the name (the hostname alone) does not match on Linux: it is left to expire.
 */
export function deadOnThisHost(host: string, pid: number): boolean {
  if (host !== thisHost() || !Number.isInteger(pid) || pid <= 0 || pid === process.pid) {
    return false;
  }
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    // EPERM: the pid exists under another user, so it is alive.
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/** An owner name for this process in a lock: `<host>/<pid>/<tag>` (see `ownerIsDead`). */
export function ownerName(tag: string): string {
  return `${thisHost()}/${process.pid}/${tag}`;
}

/** Whether `owner` (as `ownerName` wrote it) names a process of this host that is gone. */
export function ownerIsDead(owner: string): boolean {
  const [host = "", pidText] = owner.split("/");
  return deadOnThisHost(host, Number(pidText));
}
