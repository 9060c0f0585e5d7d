import { defineConfig } from "drizzle-kit";

/**
 * Migrations of the PostgreSQL store (`npx drizzle-kit generate --config drizzle.pg.config.ts
 * --name <what>`). The SQLite store keeps drizzle.config.ts and migrations/.
 */
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/pg/schema.ts",
  out: "./migrations/postgres",
});
