/** What a cut secret reads as, in stored text and in log lines alike. */
export const redactCensor = "[redacted]";

/**
 * `text` without the caller's key: an answer that echoes it (a debug field, an "on behalf of")
 * is stored and shown to every read token, and the key must never be written to disk.
 */
export function withoutKey(text: string, authorization: string): string {
  let out = text;
  // Looked for first: this runs on every proxied request, and a key is almost never there.
  for (const secret of secretsOf(authorization)) {
    if (out.includes(secret)) out = out.split(secret).join(redactCensor);
  }
  return out;
}

/** The header and the key in it; a value too short to be a key would cut a body to pieces. */
function secretsOf(authorization: string): string[] {
  const key = authorization.replace(/^\s*bearer\s+/i, "").trim();
  return [authorization, key].filter((secret) => secret.length >= 8);
}

/**
 * A parsed answer without the caller's key in any string or name: the text's cut misses a key
 * the answer wrote with JSON escapes (`\u0041` for `A`, `\/` for `/`), which parsing undoes.
 */
export function valueWithoutKey(value: unknown, authorization: string): unknown {
  if (secretsOf(authorization).length === 0) return value;
  const cut = (text: string) => withoutKey(text, authorization);
  const walk = (v: unknown): unknown => {
    if (typeof v === "string") return cut(v);
    if (Array.isArray(v)) return v.map(walk);
    if (v === null || typeof v !== "object") return v;
    return Object.fromEntries(Object.entries(v).map(([name, inner]) => [cut(name), walk(inner)]));
  };
  return walk(value);
}

/**
 * The caller's credentials as sent (`header` reads a request header by its lowercase name): the
 * operator writes the answer, and any of them it echoes (as the model, in a header that gets
 * logged) is cut before it is stored or logged; so is one the caller put in the path.
 */
export function credentialsOf(header: (name: string) => unknown): string[] {
  const found: string[] = [];
  for (const name of ["authorization", "x-api-key", "api-key"]) {
    const value = header(name);
    if (typeof value !== "string") continue;
    found.push(value);
    // A header given twice comes joined with ", " (Node joins all but a few, `authorization`
    // among the few it drops): each key in it is cut on its own, or an echo of one alone was
    // logged and stored whole. A key holds no comma.
    if (value.includes(",")) found.push(...value.split(",").map((part) => part.trim()));
  }
  return found;
}

/** `text` without any of the caller's `credentials` (see `credentialsOf`). */
export function withoutKeys(text: string, credentials: string[]): string {
  let out = text;
  for (const credential of credentials) out = withoutKey(out, credential);
  return out;
}

/** Any Decentral API key's shape (`dcntrl_live_` and its characters), whoever's, in any case. */
const anyKeyPattern = /dcntrl_[a-z]+_[a-z0-9]{8,}/gi;

/**
 * `text` with every Decentral API key cut, whoever's: a caller who puts a key in a tag or a
 * model name (by mistake, or a backend tagging receipts with the key it used) had it stored and
 * shown to every read token, in reports and CSV downloads too. The proxy cuts the caller's own
 * first (`withoutKeys`); ingest and import cut any key-shaped text, as no receipt needs one.
 */
export function withoutAnyKey(text: string): string {
  return text.toLowerCase().includes("dcntrl_") ? text.replace(anyKeyPattern, redactCensor) : text;
}

/** Whether `text` holds a Decentral API key's shape. */
export function holdsAnyKey(text: string): boolean {
  return withoutAnyKey(text) !== text;
}
