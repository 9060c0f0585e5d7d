import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AppError } from "../src/errors.js";
import { localnetAccounts } from "../src/localnet/keys.js";
import { modelCatalog } from "../src/localnet/models.js";
import {
  decentralMainnetProfile,
  loadProfile,
  localnetProfile,
  parseProfile,
  priceUnits,
} from "../src/verify/profiles.js";

function writeJson(value: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), "profile-"));
  const path = join(dir, "profile.json");
  writeFileSync(path, typeof value === "string" ? value : JSON.stringify(value));
  return path;
}

describe("protocol profiles", () => {
  it("describes the local world with the addresses of its deterministic keys", () => {
    const accounts = localnetAccounts();
    expect(localnetProfile.usdcMint).toBe(accounts.mint);
    expect(localnetProfile.tokenPrograms).toContain(accounts.tokenProgram);
    expect(localnetProfile.escrowAuthority).toBe(accounts.escrowAuthority);
    expect(localnetProfile.escrowVault).toBe(accounts.escrowVault);
    expect(localnetProfile.treasury).toBe(accounts.treasury.owner);
    expect(localnetProfile.payout.workerRatesBps).toEqual(
      Object.fromEntries(accounts.workers.map((w) => [w.address, w.rateBps])),
    );
  });

  it("prices every model exactly as the simulator's catalog does", () => {
    expect(Object.keys(localnetProfile.pricing).sort()).toEqual(
      modelCatalog.map((m) => m.id).sort(),
    );
    for (const m of modelCatalog) {
      expect(localnetProfile.pricing[m.id]).toEqual({
        creditsPerRequest: m.creditsPerRequest,
        creditsPer1kTokens: m.creditsPer1kTokens,
        includedTokens: m.includedTokens,
      });
    }
  });

  it("prices a job as credits per request plus credits per started 1k tokens beyond 500", () => {
    expect(priceUnits(localnetProfile, "qwen3-8b", 500)).toBe(80_000n);
    expect(priceUnits(localnetProfile, "qwen3-8b", 501)).toBe(120_000n);
    expect(priceUnits(localnetProfile, "llama-3.3-70b", 2000)).toBe(800_000n);
    expect(priceUnits(localnetProfile, "unknown-model", 10)).toBeNull();
  });

  it("knows the mainnet mint and split but no program ids, vaults or treasury", () => {
    const p = loadProfile("decentral-mainnet");
    expect(p).toBe(decentralMainnetProfile);
    expect(p.usdcMint).toBe("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v");
    expect(p.payout.ratesBps).toEqual([7500, 8500]);
    expect(p.settlementWindowSeconds).toBe(120);
    expect(p.programs.settlement).toBeNull();
    expect(p.escrowVault).toBeNull();
  });

  it("loads a JSON profile file and fills defaults", () => {
    const path = writeJson({
      name: "staging",
      cluster: "devnet",
      usdcMint: "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
      tokenPrograms: ["TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"],
      pricing: { "qwen3-8b": { creditsPerRequest: 8, creditsPer1kTokens: 4 } },
    });
    const p = loadProfile(path);
    expect(p.name).toBe("staging");
    expect(p.memo.settlePrefix).toBe("decentral:settle:");
    expect(p.pricing["qwen3-8b"]?.includedTokens).toBe(500);
  });

  it("keeps a model's hiddenTokens from a JSON profile file, and refuses one that is no boolean", () => {
    const model = { creditsPerRequest: 40, creditsPer1kTokens: 20 };
    const file = {
      name: "staging",
      cluster: "devnet",
      usdcMint: "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
      tokenPrograms: ["TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"],
    };
    const p = loadProfile(
      writeJson({
        ...file,
        pricing: { "llama-3.3-70b": { ...model, hiddenTokens: false }, "qwen3-8b": model },
      }),
    );
    expect(p.pricing["llama-3.3-70b"]?.hiddenTokens).toBe(false);
    // Unset, it is left out: a profile naming it nowhere keeps the id it had.
    expect(Object.keys(p.pricing["qwen3-8b"]!)).not.toContain("hiddenTokens");
    expect(() =>
      loadProfile(
        writeJson({ ...file, pricing: { "llama-3.3-70b": { ...model, hiddenTokens: "no" } } }),
      ),
    ).toThrow(/pricing\.llama-3\.3-70b\.hiddenTokens/);
  });

  it("rejects a bad profile file with an error naming the wrong field", () => {
    const path = writeJson({
      name: "bad",
      cluster: "devnet",
      usdcMint: "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
      tokenPrograms: ["TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"],
      payout: { ratesBps: [7500, 12_000] },
    });
    let error: unknown;
    try {
      loadProfile(path);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).details.field).toBe("payout.ratesBps.1");
    expect((error as AppError).message).toContain("payout.ratesBps.1");
  });

  it("refuses an address of base58 that is not 32 bytes, naming its field", () => {
    // 43 characters of `1` are 43 zero bytes: no account, so the escrow authority never signed.
    expect(() =>
      parseProfile({ ...localnetProfile, escrowAuthority: "1".repeat(43) }, "bad"),
    ).toThrow(/escrowAuthority: must be a base58 address of 32 bytes/);
    expect(() =>
      parseProfile(
        {
          ...localnetProfile,
          payout: { ...localnetProfile.payout, workerRatesBps: { ["1".repeat(43)]: 7500 } },
        },
        "bad",
      ),
    ).toThrow(/workerRatesBps/);
  });

  it("rejects a file that is not JSON and a name that is neither built in nor a file", () => {
    expect(() => loadProfile(writeJson("{ not json"))).toThrow(/not valid JSON/);
    expect(() => loadProfile("/nonexistent/profile.json")).toThrow(/neither a built-in profile/);
    expect(() => loadProfile("toString")).toThrow(/neither a built-in profile/);
    expect(() => loadProfile("__proto__")).toThrow(/neither a built-in profile/);
  });

  // Every other bad setting is named by its key (`PORT: ...`): a profile named `mainnet` said
  // only `profile "mainnet" is neither ...`, leaving the user to guess which flag or variable.
  it("names the setting that chose a refused profile: a name, a file not JSON, a field", () => {
    const named = /^AUDIT_PROFILE \(--profile\): /;
    expect(() => loadProfile("mainnet")).toThrow(named);
    expect(() => loadProfile(writeJson("{ not json"))).toThrow(named);
    const fields = writeJson({ name: "x" });
    expect(() => loadProfile(fields)).toThrow(named);
    expect(() => loadProfile(fields)).toThrow(`profile file ${fields}: cluster:`);
  });
});

// JSON.parse's message quotes the text around a bad token: `--profile /etc/passwd` printed
// "root:x:0:0"...
describe("a profile file that is not JSON", () => {
  it("is named as not JSON, with none of its text", () => {
    const dir = mkdtempSync(join(tmpdir(), "profile-text-"));
    const path = join(dir, "passwd");
    writeFileSync(path, "root:x:0:0:root:/root:/bin/bash\n");
    const secret = join(dir, "secret.json");
    writeFileSync(secret, '{\n  "name": "x",\n  "key": sk-live-123\n}\n');
    try {
      for (const file of [path, secret]) {
        let error: unknown;
        try {
          loadProfile(file);
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(AppError);
        expect((error as Error).message).toBe(
          `AUDIT_PROFILE (--profile): profile file ${file} is not valid JSON`,
        );
        expect(String((error as Error).cause ?? "")).not.toMatch(/root:x|sk-live/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// A settlement window (or receipt skew) near 2^53 s put a lock's due time past the last instant a
// Date holds: `report statement --profile` failed "Invalid time value" instead of naming the key.
describe("a profile's settlement window or receipt skew past a year", () => {
  it("is refused naming the key; a year is taken", () => {
    const base = { ...localnetProfile, name: "long" };
    expect(
      loadProfile(writeJson({ ...base, settlementWindowSeconds: 31_536_000 }))
        .settlementWindowSeconds,
    ).toBe(31_536_000);
    for (const field of ["settlementWindowSeconds", "receiptTimeSkewSeconds"]) {
      let error: unknown;
      try {
        loadProfile(writeJson({ ...base, [field]: 9_007_199_254_740_991 }));
      } catch (e) {
        error = e;
      }
      expect(error, field).toBeInstanceOf(AppError);
      expect((error as AppError).details.field).toBe(field);
    }
  });
});
