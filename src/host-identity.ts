import { readFileSync, readlinkSync } from "node:fs";
import { hostname } from "node:os";

let cached: string | undefined;

/**
 * The name of "this host" in lease and run owners: the hostname, plus on Linux the PID
 * namespace, the boot and the time namespace (`myhost@pid:[4026531836]~1b2c3d4e~t4026531834`). Two containers sharing the
 * host's network (and so its hostname) have PID namespaces of their own, where a pid means
 * another process: an owner is judged by its pid only when it was written in this namespace.
 * The root namespace has the same number on every machine: the boot id tells two machines of
 * one hostname apart (and this boot from the one before).
 */
export function thisHost(): string {
  if (cached === undefined) {
    let namespace = "";
    let boot = "";
    let clock = "";
    try {
      namespace = readlinkSync("/proc/self/ns/pid");
      boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim().slice(0, 8);
      // A process's start time reads shifted by the reader's time namespace: one judges the
      // other's start only when both read it through the same (kernels before 5.6 have none).
      clock = /\[(\d+)\]/.exec(readlinkSync("/proc/self/ns/time"))?.[1] ?? "";
    } catch {
      // Not Linux (or no /proc): the hostname alone, or with the namespace.
    }
    const suffix = `${boot ? `~${boot}` : ""}${clock ? `~t${clock}` : ""}`;
    cached = namespace ? `${hostname()}@${namespace}${suffix}` : hostname();
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

/**
 * Whether the process `pid` of host `host` is known to run now: the host is this one, the pid
 * is another process's and exists, and (with `started`) that process started at that time, so
 * a reused pid does not keep a dead owner alive. A clock step cannot fake it, as it can a
 * heartbeat's expiry.
 */
export function aliveOnThisHost(host: string, pid: number, started?: string): boolean {
  if (host !== thisHost() || !Number.isInteger(pid) || pid <= 0 || pid === process.pid) {
    return false;
  }
  if (deadOnThisHost(host, pid)) return false;
  if (started === undefined) return true;
  return startOf(pid) === started;
}

/** When this process started, as `startOf` reads it, or null. */
export function ownStartTime(): string | null {
  if (ownStart === undefined) ownStart = startOf(process.pid);
  return ownStart;
}

/**
 * When the process `pid` started (clock ticks since boot, from `/proc/<pid>/stat`), or null
 * when it cannot be read (gone, or not Linux). With the pid it names one process: a pid is
 * reused, and a service restarted in a container is pid 1 again, often in the same namespace.
 */
function startOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces), from the third: starttime is 22nd.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

let ownStart: string | null | undefined;

/**
 * An owner name for this process in a lock or an open receipt: `<host>/<pid>.<start>/<tag>`
 * (`<host>/<pid>/<tag>` where the start cannot be read; see `ownerIsDead`).
 */
export function ownerName(tag: string): string {
  const started = ownStartTime();
  const incarnation = started === null ? `${process.pid}` : `${process.pid}.${started}`;
  return `${thisHost()}/${incarnation}/${tag}`;
}

/**
 * Whether `owner` (as `ownerName` wrote it) names a process of this host that is gone: no
 * process has its pid, or the one that has it started at another time (the pid was reused, or
 * the service was restarted as pid 1 of a container whose namespace came back the same).
 */
export function ownerIsDead(owner: string): boolean {
  const [host = "", incarnation = ""] = owner.split("/");
  const [pidText, started] = incarnation.split(".");
  const pid = Number(pidText);
  if (started !== undefined && host === thisHost() && Number.isInteger(pid) && pid > 0) {
    const now = startOf(pid);
    if (now !== null) return now !== started;
  }
  return deadOnThisHost(host, pid);
}

/**
 * Whether `owner` (as `ownerName` wrote it) names another process of this host that runs now,
 * the one that wrote it (see `aliveOnThisHost`).
 */
export function ownerIsAlive(owner: string): boolean {
  const [host = "", incarnation = ""] = owner.split("/");
  const [pidText, started] = incarnation.split(".");
  return aliveOnThisHost(host, Number(pidText), started);
}
