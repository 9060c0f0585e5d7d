/**
 * The host node:http connects to for `url`: an IPv6 address without the URL's brackets
 * (`http://[::1]:8080` is `::1`), which node:http would look up as a name and not find. A Host
 * header keeps them (`url.host`).
 */
export function connectHostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, "$1");
}
