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
