import type { Command } from "commander";
import type { Config } from "../config.js";
import type { Store } from "../db/client.js";
import { AppError } from "../errors.js";
import { type TokenRole, tokenRoles } from "./token-roles.js";

type Helpers = {
  withDatabaseOption(command: Command): Command;
  configFromFlags(flags: Record<string, unknown>): Config;
};

const iso = (ms: number | null) => (ms === null ? "-" : new Date(ms).toISOString());

/** Registers `tokens create|list|revoke`. */
export function registerTokenCommands(program: Command, helpers: Helpers): void {
  const tokens = program.command("tokens").description("access tokens of the audit API");
  /** Runs `fn` on the store `flags` name; `undone` says what a write lock held kept undone. */
  const withStore = async <T>(
    flags: Record<string, unknown>,
    fn: (store: Store) => Promise<T>,
    undone = "nothing was changed",
  ): Promise<T> => {
    // Loaded here, not at the top: `--help` and the other commands never pay for the store.
    const [{ openStore }, { writeLockHeldError }] = await Promise.all([
      import("../db/open.js"),
      import("../db/client.js"),
    ]);
    // A token created in a mistyped store would never authenticate against the real one.
    const store = await openStore(helpers.configFromFlags(flags), { create: false });
    try {
      return await fn(store);
    } catch (error) {
      throw writeLockHeldError(store, error, undone);
    } finally {
      await store.close();
    }
  };

  helpers
    .withDatabaseOption(
      tokens
        .command("create")
        .description("create a token and print it once (only its hash is stored)")
        .requiredOption("--role <role>", `one of ${tokenRoles.join(", ")}`)
        .requiredOption("--name <name>", "who or what uses it, e.g. grafana"),
    )
    .action(async (flags: { role: string; name: string }) => {
      if (!tokenRoles.includes(flags.role as TokenRole)) {
        throw new AppError("validation_failed", `--role must be one of ${tokenRoles.join(", ")}`, {
          field: "role",
        });
      }
      const { createToken } = await import("./tokens.js");
      const created = await withStore(
        flags,
        (store) => createToken(store, { role: flags.role as TokenRole, name: flags.name }),
        "no token was created",
      );
      console.error(
        `created ${created.id} (${created.role}, "${created.name}"); it is shown only now:`,
      );
      console.log(created.token);
    });

  helpers
    .withDatabaseOption(
      tokens.command("list").description("list tokens (never their text)").option("--json", "JSON"),
    )
    .action(async (flags: { json?: boolean }) => {
      const { listTokens, printableTokenName } = await import("./tokens.js");
      const rows = await withStore(flags, (store) => listTokens(store));
      if (flags.json) {
        // Times as ISO strings, as the table and every API give them.
        const isoOrNull = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
        const json = rows.map((t) => ({
          ...t,
          createdAt: isoOrNull(t.createdAt),
          lastUsedAt: isoOrNull(t.lastUsedAt),
          revokedAt: isoOrNull(t.revokedAt),
        }));
        console.log(JSON.stringify(json, null, 2));
        return;
      }
      console.log(["id", "role", "name", "created", "last used", "revoked"].join("\t"));
      for (const t of rows) {
        console.log(
          [
            t.id,
            t.role,
            // A name stored before names were checked may still hold a tab, newline or escape.
            printableTokenName(t.name),
            iso(t.createdAt),
            iso(t.lastUsedAt),
            iso(t.revokedAt),
          ].join("\t"),
        );
      }
    });

  helpers
    .withDatabaseOption(
      tokens
        .command("revoke")
        .description("revoke a token")
        .argument("<id>", "its id (tok_…), or its text (da_…) when only that is known"),
    )
    .action(async (id: string, flags: Record<string, unknown>) => {
      const { revokeToken } = await import("./tokens.js");
      const asked = Date.now();
      const revoked = await withStore(
        flags,
        (store) => revokeToken(store, id, () => asked),
        "no token was revoked",
      );
      // Revoked before (the first time is kept): said so, not as a revocation made now.
      const before = revoked.revokedAt !== null && revoked.revokedAt < asked;
      console.log(
        `${before ? "already revoked" : "revoked"} ${revoked.id} at ${iso(revoked.revokedAt)}`,
      );
    });
}
