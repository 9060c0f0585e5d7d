/**
 * RPC providers put API keys in the query string (`?api-key=`), the userinfo, or the path
 * (`/v2/<key>`, `/<token>/`) of their URLs. Anything shown outside the process (metrics labels,
 * log lines, error texts, explorer links) keeps only scheme, host and port, and marks a
 * dropped path with `/…`. The scheme in any case: a URL's setting takes `HTTPS://` as given.
 */
export function withoutUrlSecrets(text: string): string {
  return text.replace(
    /(https?:\/\/)(?:[^\s/@]*@)?([^\s/?#)"',]*)([^\s?#)"',]*)(?:\?[^\s#)"',]*)?/gi,
    (_match, scheme: string, host: string, path: string) =>
      `${scheme}${host}${path.length > 1 ? "/…" : path}`,
  );
}

/** Display names for endpoints: secrets dropped, and a `#n` suffix where two would collide. */
export function endpointNames(urls: readonly string[]): string[] {
  const seen = new Map<string, number>();
  return urls.map((url) => {
    const name = withoutUrlSecrets(url);
    const n = (seen.get(name) ?? 0) + 1;
    seen.set(name, n);
    return n === 1 ? name : `${name}#${n}`;
  });
}

/** Parts of a URL this short are not taken for secrets (`v2`, `mainnet`): cut, they would mangle a message. */
const shortestSecret = 8;

/**
 * `text`, an endpoint's own words (a JSON-RPC error's message), with the secret parts of the
 * URL it was sent to cut out as `[redacted]`: its userinfo, each path segment and each query
 * value (raw and percent-decoded) of at least 8 characters, and any URL in it as
 * `withoutUrlSecrets` shows one. A provider answering `invalid api key /?api-key=<key>` had its
 * key printed in `verify`'s summary and logged, while the URL itself was shown as host alone.
 */
export function withoutEndpointSecrets(text: string, url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return withoutUrlSecrets(text);
  }
  const parts = new Set<string>();
  const add = (part: string) => {
    for (const form of [part, safeDecode(part)]) {
      if (form.length >= shortestSecret) parts.add(form);
    }
  };
  add(parsed.username);
  add(parsed.password);
  for (const segment of parsed.pathname.split("/")) add(segment);
  if (parsed.search.length > 1) {
    add(parsed.search.slice(1));
    for (const pair of parsed.search.slice(1).split("&")) add(pair.slice(pair.indexOf("=") + 1));
  }
  let out = withoutUrlSecrets(text);
  // Longest first, so a whole query string goes before the value inside it.
  for (const part of [...parts].sort((a, b) => b.length - a.length)) {
    out = out.split(part).join("[redacted]");
  }
  return out;
}

function safeDecode(part: string): string {
  try {
    return decodeURIComponent(part.replace(/\+/g, " "));
  } catch {
    return part;
  }
}
