import { createHash } from "node:crypto";

/**
 * The dashboard's one stylesheet, served from `serve` itself (no external assets, no build
 * step). Colours keep at least 4.5:1 against their background; focus is always visible.
 */
export const dashboardCss = `
:root { --fg:#1a1a1a; --muted:#4a4f55; --bg:#fff; --panel:#f4f6f8; --line:#d0d5db;
  --link:#0b57d0; --focus:#ffbf47; --ok:#1b7f3b; --partial:#7a5c00; --bad:#b3261e;
  --dropped:#6b2fa3; --unverifiable:#4a4f55; --pending:#0b57d0; }
* { box-sizing: border-box; }
html { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
body { margin: 0; }
a { color: var(--link); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, summary:focus-visible {
  outline: 3px solid var(--fg); outline-offset: 2px; box-shadow: 0 0 0 6px var(--focus); }
.skip { position: absolute; left: -999px; top: 0; background: var(--focus); color: var(--fg); padding: .5rem 1rem; }
.skip:focus { left: .5rem; }
header.top { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.5rem; padding: .6rem 1rem;
  background: #10243e; color: #fff; }
header.top a { color: #fff; }
header.top .brand { font-weight: 700; text-decoration: none; margin-right: auto; }
header.top nav ul { display: flex; flex-wrap: wrap; gap: .25rem 1rem; list-style: none; margin: 0; padding: 0; }
header.top nav a[aria-current="page"] { font-weight: 700; text-decoration-thickness: 3px; }
header.top form { margin: 0; }
header.top button { background: transparent; color: #fff; border: 1px solid #fff; border-radius: 4px; padding: .2rem .7rem; cursor: pointer; font: inherit; }
header.top .who { font-size: .875rem; }
main { max-width: 1560px; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; margin: .5rem 0 1rem; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; margin: 1.75rem 0 .6rem; }
p.note, .muted { color: var(--muted); }
.final { background: var(--panel); border-left: 4px solid var(--ok); padding: .5rem .75rem; }
.final.open { border-left-color: var(--partial); }
.flash { background: #e6f4ea; border: 1px solid var(--ok); padding: .5rem .75rem; }
.error { background: #fce8e6; border: 1px solid var(--bad); padding: .5rem .75rem; }
form.filters { display: flex; flex-wrap: wrap; align-items: flex-end; gap: .6rem 1rem; background: var(--panel); padding: .75rem; border-radius: 6px; }
form.filters label { display: flex; flex-direction: column; font-size: .875rem; gap: .15rem; }
input, select, button { font: inherit; }
input, select { padding: .3rem .4rem; border: 1px solid #6b7178; border-radius: 4px; background: #fff; color: var(--fg); min-height: 2.25rem; }
button.primary, a.button { background: var(--link); color: #fff; border: 0; border-radius: 4px; padding: .45rem .9rem; cursor: pointer; text-decoration: none; display: inline-block; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(165px, 1fr)); gap: .75rem; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .6rem .8rem; }
.card .label { font-size: .875rem; color: var(--muted); }
.card .value { font-size: 1.35rem; font-variant-numeric: tabular-nums; font-weight: 600; overflow-wrap: anywhere; }
.card .sub { font-size: .8rem; color: var(--muted); font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
table.wide { font-size: .875rem; }
table.wide td:first-child, table.wide th:first-child { position: sticky; left: 0; background: var(--bg); white-space: nowrap; }
/* A group name wraps at a width of its own: the most ingest takes (200 characters) made the
   sticky column wider than the table's box, and it covered every figure at every scroll. */
table.wide td:first-child { max-width: min(20rem, 40vw); white-space: normal; overflow-wrap: anywhere; }
table.wide thead th:first-child { background: var(--panel); }
table.wide tr.total td:first-child { background: var(--bg); }
th, td { padding: .35rem .5rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; }
tr.total td { font-weight: 700; border-top: 2px solid var(--fg); }
th a { color: var(--fg); }
.nowrap { white-space: nowrap; overflow-wrap: normal; }
.unprintable { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .8em;
  background: #fdecea; color: var(--bad); border: 1px solid var(--bad); border-radius: 3px; padding: 0 .15em; }
.mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .85rem; overflow-wrap: anywhere; }
.verdict { display: inline-block; padding: .05rem .5rem; border-radius: 999px; color: #fff; font-size: .85rem; font-weight: 600; white-space: nowrap; }
.v-verified { background: var(--ok); } .v-partially_verified { background: var(--partial); }
.v-discrepancy { background: var(--bad); } .v-dropped { background: var(--dropped); }
.v-unverifiable { background: var(--unverifiable); } .v-pending, .v-awaiting_finality, .v-error, .v-rpc_disagreement { background: var(--pending); }
.outcome-pass { color: var(--ok); font-weight: 600; } .outcome-fail { color: var(--bad); font-weight: 700; } .outcome-skip { color: var(--muted); }
.verdict-box { border: 2px solid var(--line); border-radius: 8px; padding: .75rem 1rem; overflow-wrap: anywhere; }
.verdict-box.bad { border-color: var(--bad); } .verdict-box.good { border-color: var(--ok); } .verdict-box.partial { border-color: var(--partial); }
.verdict-box p { margin: .35rem 0 0; }
.bar { display: flex; height: 1.5rem; border-radius: 4px; overflow: hidden; border: 1px solid var(--line); margin: .5rem 0; }
.bar span { display: block; height: 100%; }
.legend { display: flex; flex-wrap: wrap; gap: .25rem 1rem; list-style: none; padding: 0; margin: .25rem 0; }
.legend i { display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem; vertical-align: -1px; border-radius: 2px; }
svg.chart { width: 100%; height: auto; max-height: 320px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
/* A list item may quote the operator's text (a memo's job id is as long as the memo): it wraps
   anywhere rather than run the page past a phone's screen. */
main li { overflow-wrap: anywhere; }
.pager { display: flex; gap: 1rem; margin: .75rem 0; }
.signin { max-width: 28rem; margin: 3rem auto; }
.signin label { display: block; font-weight: 600; margin-bottom: .25rem; }
.signin input { width: 100%; }
@media (max-width: 640px) {
  main { padding: .6rem; }
  h1 { font-size: 1.3rem; }
  dl.facts { grid-template-columns: 1fr; } dl.facts dd { margin-bottom: .4rem; }
}
`;

/** Cache-busting version of the stylesheet, so a new release is never styled by an old copy. */
export const dashboardCssVersion = createHash("sha256")
  .update(dashboardCss)
  .digest("hex")
  .slice(0, 12);
