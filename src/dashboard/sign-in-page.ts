import { BASE, type Html, html } from "./html.js";

/**
 * The sign-in form. The token travels only in this POST body: never in a URL, never echoed
 * back into the page, never in browser storage (`autocomplete="off"`, a password field).
 */
export function signInBody(opts: { next: string; error?: string; notice?: string }): Html {
  return html`<div class="signin">
<h1>Sign in</h1>
<p>Paste an access token of role <strong>read</strong> or <strong>admin</strong> (created with <span class="mono">decentral-audit tokens create</span>). It is exchanged for a session that ends when you sign out or after 8 hours.</p>
${opts.error ? html`<p class="error" role="alert" id="sign-in-error">${opts.error}</p>` : ""}
${opts.notice ? html`<p class="flash" role="status">${opts.notice}</p>` : ""}
<form method="post" action="${BASE}/sign-in">
<input type="hidden" name="next" value="${opts.next}">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required${opts.error ? html` aria-describedby="sign-in-error" aria-invalid="true"` : ""} autofocus>
<p><button class="primary" type="submit">Sign in</button></p>
</form>
</div>`;
}
