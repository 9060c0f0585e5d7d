import { describe, expect, it } from "vitest";
import { StartWindow } from "../src/chain/start-window.js";

describe("StartWindow", () => {
  it("lets `cap` starts through at once, then one more each time the oldest leaves the window", () => {
    let t = 0;
    const window = new StartWindow(3, 1000, () => t);
    expect([window.reserve(), window.reserve(), window.reserve()]).toEqual([0, 0, 0]);
    expect(window.reserve()).toBe(1000);
    expect(window.reserve()).toBe(1000);
    t = 500;
    expect(window.reserve()).toBe(500);
    expect(window.reserve()).toBe(1500);
    t = 5000;
    expect(window.reserve()).toBe(0);
  });
});
