/**
 * A hand-written SVG of the soak's samples (no dependency): one panel per measure (RSS, descriptors,
 * heap used and committed, the young and old generations' committed size, live timers, event-loop delay p99), one line per program, the warm-up shaded and, for
 * RSS and descriptors, the ±5% band around the post-warm-up value drawn, so a person sees at a glance
 * whether the lines stay flat.
 */
import type { Sample, Series } from './sampler.js';
import { FLAT_TOLERANCE, type Growth } from './flatness.js';

const W = 900;
const PANEL_H = 150;
const PAD_L = 70;
const PAD_R = 170;
const PAD_T = 28;
const GAP = 36;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];

interface Panel {
  readonly title: string;
  readonly value: (s: Sample) => number;
  readonly band?: (g: Growth) => number;
}

const PANELS: readonly Panel[] = [
  { title: 'RSS (MiB)', value: (s) => s.rssKiB / 1024, band: (g) => g.rssBaseKiB / 1024 },
  { title: 'open descriptors', value: (s) => s.fds, band: (g) => g.fdsBase },
  { title: 'heap used (MiB)', value: (s) => s.heapUsedKiB / 1024 },
  { title: 'heap committed (MiB)', value: (s) => s.heapTotalKiB / 1024 },
  { title: 'young generation committed (MiB): new_space', value: (s) => (s.spaces?.new_space?.size ?? NaN) / 1024 },
  { title: 'old generation committed (MiB): old_space', value: (s) => (s.spaces?.old_space?.size ?? NaN) / 1024 },
  { title: 'live timers', value: (s) => s.liveTimers },
  { title: 'event-loop delay p99 (ms), servers', value: (s) => s.eventLoopP99Ms },
];

const esc = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmt = (n: number): string => (Math.abs(n) >= 100 ? n.toFixed(0) : n.toFixed(1));

export function soakChart(title: string, series: readonly Series[], growth: readonly Growth[], warmUpMs: number): string {
  const tMax = Math.max(1, ...series.flatMap((s) => s.samples.map((x) => x.tMs)));
  const plotW = W - PAD_L - PAD_R;
  const out: string[] = [];
  const H = PAD_T + PANELS.length * (PANEL_H + GAP);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${PAD_L}" y="18" font-size="14" font-weight="bold">${esc(title)}</text>`);
  PANELS.forEach((panel, pi) => {
    const top = PAD_T + pi * (PANEL_H + GAP) + 14;
    const values = series.flatMap((s) => s.samples.map(panel.value)).filter(Number.isFinite);
    const bands = panel.band ? growth.map(panel.band).filter(Number.isFinite) : [];
    const all = [...values, ...bands.flatMap((b) => [b * (1 + FLAT_TOLERANCE), b * (1 - FLAT_TOLERANCE)])];
    const yMax = all.length ? Math.max(...all) * 1.05 : 1;
    const yMin = 0;
    const x = (t: number): number => PAD_L + (t / tMax) * plotW;
    const y = (v: number): number => top + PANEL_H - ((v - yMin) / (yMax - yMin || 1)) * PANEL_H;
    out.push(`<text x="${PAD_L}" y="${top - 4}" font-weight="bold">${esc(panel.title)}</text>`);
    out.push(`<rect x="${PAD_L}" y="${top}" width="${fmt(x(Math.min(warmUpMs, tMax)) - PAD_L)}" height="${PANEL_H}" fill="#eee"/>`);
    out.push(`<rect x="${PAD_L}" y="${top}" width="${plotW}" height="${PANEL_H}" fill="none" stroke="#888"/>`);
    for (const v of [yMax, yMax / 2, 0]) out.push(`<text x="${PAD_L - 6}" y="${fmt(y(v) + 4)}" text-anchor="end">${fmt(v)}</text>`);
    growth.forEach((g, gi) => {
      const b = panel.band?.(g);
      if (b === undefined || !Number.isFinite(b)) return;
      const color = COLORS[gi % COLORS.length]!;
      for (const f of [1 + FLAT_TOLERANCE, 1 - FLAT_TOLERANCE]) {
        out.push(
          `<line x1="${fmt(x(g.warmUpMs))}" x2="${fmt(x(tMax))}" y1="${fmt(y(b * f))}" y2="${fmt(y(b * f))}" stroke="${color}" stroke-dasharray="3,3" stroke-opacity="0.6"/>`,
        );
      }
    });
    series.forEach((s, si) => {
      const pts = s.samples.filter((p) => Number.isFinite(panel.value(p))).map((p) => `${fmt(x(p.tMs))},${fmt(y(panel.value(p)))}`);
      if (pts.length > 1)
        out.push(`<polyline fill="none" stroke="${COLORS[si % COLORS.length]}" stroke-width="1.5" points="${pts.join(' ')}"/>`);
    });
    series.forEach((s, si) => {
      out.push(`<rect x="${W - PAD_R + 10}" y="${top + si * 16}" width="10" height="10" fill="${COLORS[si % COLORS.length]}"/>`);
      out.push(`<text x="${W - PAD_R + 26}" y="${top + si * 16 + 9}">${esc(s.name)}</text>`);
    });
    out.push(`<text x="${PAD_L + plotW}" y="${top + PANEL_H + 14}" text-anchor="end">${fmt(tMax / 1000)} s (grey: warm-up)</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
