import { type Html, html, raw, usdc } from "./html.js";

export interface ChartDay {
  day: string;
  charged: bigint;
  verified: bigint;
}

const W = 960;
const H = 300;
const LEFT = 92;
const BOTTOM = 34;
const TOP = 12;
const RIGHT = 8;

/**
 * Daily charged vs verified money as an inline SVG bar chart, drawn on the server. Heights are
 * computed in bigint (value x plot height / max), so no amount passes through floating point;
 * each bar carries its exact figures in a `<title>`, and the same numbers follow as a table.
 */
export function chargedVsVerifiedChart(days: ChartDay[]): Html {
  const plotW = W - LEFT - RIGHT;
  const plotH = H - TOP - BOTTOM;
  let max = 0n;
  for (const d of days) if (d.charged > max) max = d.charged;
  if (d0(days)) return html`<p class="muted">No jobs in this period.</p>`;
  const slot = plotW / Math.max(days.length, 1);
  const barW = Math.max(1, Math.min(18, (slot - 2) / 2));
  const height = (v: bigint) => (max === 0n ? 0 : Number((v * BigInt(plotH)) / max));
  const every = Math.max(1, Math.ceil(days.length / 10));
  const ticks = [0n, max / 2n, max];
  const bars = days.map((d, i) => {
    const x = LEFT + i * slot + slot / 2 - barW;
    const hc = height(d.charged);
    const hv = height(d.verified);
    const label = `${d.day}: charged ${usdc(d.charged)} USDC, verified ${usdc(d.verified)} USDC`;
    return html`<g><title>${label}</title>
<rect x="${x.toFixed(1)}" y="${TOP + plotH - hc}" width="${barW.toFixed(1)}" height="${hc}" fill="#10243e"></rect>
<rect x="${(x + barW).toFixed(1)}" y="${TOP + plotH - hv}" width="${barW.toFixed(1)}" height="${hv}" fill="#1b7f3b"></rect>
${i % every === 0 ? html`<text x="${(x + barW).toFixed(1)}" y="${H - 12}" text-anchor="middle" font-size="12" fill="#4a4f55">${d.day.slice(5)}</text>` : ""}
</g>`;
  });
  return html`<figure style="margin:0">
<svg class="chart" viewBox="0 0 ${W} ${H}" role="img" aria-labelledby="chart-title chart-desc">
<title id="chart-title">Charged and verified money per day, USDC</title>
<desc id="chart-desc">Dark bars: charged. Green bars: charged on jobs proven in full. The table below gives every figure.</desc>
${ticks.map(
  (
    t,
  ) => html`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${TOP + plotH - height(t)}" y2="${TOP + plotH - height(t)}" stroke="#d0d5db"></line>
<text x="${LEFT - 6}" y="${TOP + plotH - height(t) + 4}" text-anchor="end" font-size="12" fill="#4a4f55">${usdc(t)}</text>`,
)}
${bars}
</svg>
<figcaption><ul class="legend"><li><i style="background:#10243e"></i>charged</li><li><i style="background:#1b7f3b"></i>verified (charged on jobs proven in full)</li></ul></figcaption>
</figure>
<details><summary>The chart's figures as a table</summary>
<div class="scroll"><table><caption class="muted">USDC per UTC day</caption>
<thead><tr><th scope="col">day</th><th scope="col" class="num">charged</th><th scope="col" class="num">verified</th></tr></thead>
<tbody>${days.map((d) => html`<tr><td>${d.day}</td><td class="num">${usdc(d.charged)}</td><td class="num">${usdc(d.verified)}</td></tr>`)}</tbody>
</table></div></details>${raw("")}`;
}

function d0(days: ChartDay[]): boolean {
  return days.every((d) => d.charged === 0n && d.verified === 0n);
}
