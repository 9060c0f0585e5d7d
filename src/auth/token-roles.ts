/** The roles of an access token (kept apart from the schema: `--help` lists them). */
export const tokenRoles = ["read", "ingest", "admin"] as const;
export type TokenRole = (typeof tokenRoles)[number];
