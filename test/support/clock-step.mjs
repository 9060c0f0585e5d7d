// Preloaded into a CLI process (NODE_OPTIONS=--import): its wall clock (Date.now, new Date())
// reads the number of ms in the file CLOCK_SHIFT_FILE ahead of the host's, read again every
// 20 ms, so a test steps the clock of several processes at once, as NTP steps a host's. The
// monotonic clock (performance.now, process.hrtime) is left alone, as a step leaves it.
import { readFileSync } from "node:fs";

const file = process.env.CLOCK_SHIFT_FILE;
const hostNow = Date.now.bind(Date);
let shift = 0;
const read = () => {
  try {
    shift = Number(readFileSync(file, "utf8")) || 0;
  } catch {
    // Not written yet: the host's clock.
  }
};
read();
setInterval(read, 20).unref();
const HostDate = Date;
class SteppedDate extends HostDate {
  constructor(...args) {
    if (args.length === 0) super(hostNow() + shift);
    else super(...args);
  }
  static now() {
    return hostNow() + shift;
  }
}
globalThis.Date = SteppedDate;
