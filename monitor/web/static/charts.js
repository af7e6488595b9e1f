// hashtag-monitor dashboard: the SVG charts (no dependencies, no build).
// Charts are drawn at the container's own pixel width (and redrawn when it changes), so
// axis text stays 11 px on a phone instead of being scaled down with a fixed viewBox.
// Every string from the server goes in through textContent or an attribute, never markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function pad2(n) { return String(n).padStart(2, "0"); }

// A full UTC time for tooltips and tables: day only when the step is a day or more.
function fmtTime(iso, stepSeconds) {
  const d = new Date(iso);
  const day = `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
  if (stepSeconds >= 86400) return day;
  return `${day} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
}

// A short axis label: the clock alone within a day, month-day and clock within a year.
function fmtAxis(ms, stepSeconds, spanMs) {
  const d = new Date(ms);
  if (stepSeconds >= 86400) return fmtTime(d.toISOString(), stepSeconds);
  const clock = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
  if (spanMs <= 86400e3) return clock;
  return `${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${clock}`;
}

function fmtInt(v) { return Number(v).toLocaleString("en-US"); }
function fmtMean(v) {
  return v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + v.toFixed(3);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function chartWidth(container) {
  return Math.max(260, Math.round(container.clientWidth || 960));
}

// The stretch of time an alert covers: from when it became pending (or fired, for a
// resolved one, whose active_since the lifecycle clears) to when it resolved, or now.
function alertSpan(a) {
  const ms = (iso) => (iso ? Date.parse(iso) : null);
  const start = a.state === "resolved" ? ms(a.fired_at) : ms(a.active_since) ?? ms(a.fired_at);
  const fired = a.state === "pending" ? null : ms(a.fired_at);
  const end = a.state === "resolved" ? ms(a.resolved_at) : null;
  return { start, fired, end };
}

// Alert markers: a shaded band over the alert's stretch (clipped to the chart) and,
// when it fired inside the range, a dashed line with a flag at the top. Each carries a
// <title>, so hovering says which rule and why.
function drawAlertMarks(root, marks, geom) {
  const { t0, t1, xt, T, H, B } = geom;
  const layer = svg("g", { class: "alert-marks" });
  let drawn = 0;
  for (const m of marks) {
    const span = alertSpan(m);
    if (span.start === null) continue;
    const from = Math.max(span.start, t0), to = Math.min(span.end ?? Date.now(), t1);
    if (to < t0 || from > t1 || to < from) continue;
    const g = svg("g", { class: `alert-mark alert-${m.state}`, "data-alert": m.id, "data-rule": m.rule,
      "data-tag": (m.labels && m.labels.tag) || "", "data-state": m.state });
    const title = svg("title");
    const when = span.fired ?? span.start;
    title.textContent = `alert ${m.rule} (${m.state}) since ${fmtTime(new Date(when).toISOString(), 60)} UTC` +
      (m.summary ? `\n${m.summary}` : "");
    g.append(title);
    const x0 = xt(from), x1 = xt(to);
    g.append(svg("rect", { class: "alert-band", x: x0, y: T, width: Math.max(2, x1 - x0), height: H - T - B }));
    const at = span.fired ?? span.start;
    if (at >= t0 && at <= t1) {
      const x = xt(at);
      g.append(svg("line", { class: "alert-line", x1: x, x2: x, y1: T, y2: H - B }));
      g.append(svg("path", { class: "alert-flag", d: `M${x - 5},${T - 1}L${x + 5},${T - 1}L${x},${T + 7}Z` }));
    }
    layer.append(g);
    drawn += 1;
  }
  root.append(layer);
  return drawn;
}

// A line chart: series = [{name, color, values: [number|null]}], times = ISO strings.
// opts: label, yMin, yMax, integer, zero, step (seconds), height, marks (alerts).
function lineChart(container, times, series, opts) {
  container.replaceChildren();
  const W = chartWidth(container);
  const narrow = W < 560;
  const H = narrow ? Math.round((opts.height || 220) * 0.8) : opts.height || 220;
  const L = opts.integer ? 44 : 40, R = 10, T = 12, B = 24;
  const n = times.length;
  const ms = times.map((t) => Date.parse(t));
  const t0 = n ? ms[0] : Date.now(), t1 = n ? ms[n - 1] : t0;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
    "aria-label": opts.label, "data-points": n, "data-series": series.length });
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const xt = (t) => L + (t1 === t0 ? 0 : ((t - t0) * (W - L - R)) / (t1 - t0));
  const yMin = opts.yMin, yMax = opts.yMax;
  const y = (v) => T + (H - T - B) * (1 - (v - yMin) / (yMax - yMin || 1));
  const grid = svg("g", { class: "grid axis" });
  // whole-number ticks for counts: 5 divisions when they divide the top evenly
  const div = opts.integer ? ([5, 4, 2].find((d) => (yMax - yMin) % d === 0 && (yMax - yMin) / d >= 1) || 1) : 4;
  for (let k = 0; k <= div; k++) {
    const v = yMin + ((yMax - yMin) * k) / div;
    grid.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const label = svg("text", { x: L - 5, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = opts.integer ? fmtInt(Math.round(v)) : v.toFixed(narrow ? 1 : 2);
    grid.append(label);
  }
  // as many time labels as fit (room for the label plus a gap), at least the two ends
  const room = fmtAxis(t0, opts.step, t1 - t0).length * 7 + 28;
  const ticks = Math.min(n, Math.max(2, Math.min(8, Math.floor((W - L - R) / room) + 1)));
  for (let k = 0; k < ticks; k++) {
    const i = ticks === 1 ? 0 : Math.round((k * (n - 1)) / (ticks - 1));
    const label = svg("text", { x: x(i), y: H - 6, "text-anchor": k === 0 ? "start" : k === ticks - 1 ? "end" : "middle" });
    label.textContent = fmtAxis(ms[i], opts.step, t1 - t0);
    grid.append(label);
  }
  root.append(grid);
  const marks = opts.marks || [];
  const drawnMarks = n ? drawAlertMarks(root, marks, { t0, t1: t1 + opts.step * 1000, xt: (t) => Math.min(W - R, xt(t)), T, H, B }) : 0;
  root.setAttribute("data-alerts", drawnMarks);
  if (opts.zero) root.append(svg("line", { class: "zero", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
  for (const s of series) {
    let d = "", pen = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    const path = svg("path", { d: d || "M0,0", fill: "none", stroke: s.color, "stroke-width": 1.8,
      "stroke-linejoin": "round", "data-tag": s.name, "data-total": s.total === undefined ? "" : s.total });
    root.append(path);
    // a single isolated point draws as a dot so it is not invisible
    s.values.forEach((v, i) => {
      const prev = s.values[i - 1], next = s.values[i + 1];
      if (v !== null && v !== undefined && (prev === null || prev === undefined) && (next === null || next === undefined)) {
        root.append(svg("circle", { cx: x(i), cy: y(v), r: 2.5, fill: s.color }));
      }
    });
  }
  const cursor = svg("line", { class: "cursor", y1: T, y2: H - B, x1: L, x2: L, visibility: "hidden" });
  root.append(cursor);
  container.append(root);
  const tip = document.createElement("div");
  tip.className = "tooltip";
  container.append(tip);
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    item.setAttribute("data-tag", s.name);
    item.textContent = s.legend || s.name;
    item.style.setProperty("--swatch", s.color);
    legend.append(item);
  }
  if (drawnMarks) {
    const key = document.createElement("span");
    key.className = "alert-key";
    key.textContent = `${drawnMarks} alert${drawnMarks === 1 ? "" : "s"} (shaded while active)`;
    legend.append(key);
  }
  container.append(legend);
  root.addEventListener("mousemove", (ev) => {
    if (!n) return;
    const box = root.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * W;
    const i = Math.max(0, Math.min(n - 1, Math.round(((px - L) / (W - L - R)) * (n - 1))));
    cursor.setAttribute("x1", x(i)); cursor.setAttribute("x2", x(i)); cursor.setAttribute("visibility", "visible");
    const lines = [fmtTime(times[i], opts.step) + " UTC"];
    for (const s of series) lines.push(`${s.name}: ${opts.integer ? fmtInt(s.values[i] || 0) : fmtMean(s.values[i])}`);
    const stepEnd = ms[i] + opts.step * 1000;
    for (const m of marks) {
      const span = alertSpan(m);
      if (span.start !== null && span.start < stepEnd && (span.end ?? Date.now()) >= ms[i]) lines.push(`alert: ${m.rule} (${m.state})`);
    }
    tip.textContent = lines.join("\n");
    tip.style.display = "block";
    tip.style.left = `${Math.max(0, Math.min(box.width - 170, (x(i) / W) * box.width + 10))}px`;
    tip.style.top = "8px";
  });
  root.addEventListener("mouseleave", () => { tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
}

// Bars of r over lags, with the ±noise band and the best lag marked.
function xcorrChart(container, data) {
  container.replaceChildren();
  const W = chartWidth(container), H = W < 560 ? 150 : 180, L = 40, R = 10, T = 10, B = 24;
  const lags = data.lags, r = data.r, n = lags.length;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
    "aria-label": "cross-correlation by lag", "data-best-lag": data.best_lag === null ? "" : data.best_lag, "data-points": n });
  const lim = Math.max(0.2, niceMax(Math.max(...r.map(Math.abs), data.noise_band) * 1.1));
  const y = (v) => T + (H - T - B) * (1 - (v + lim) / (2 * lim));
  const bw = (W - L - R) / Math.max(1, n);
  root.append(svg("rect", { class: "band", x: L, width: W - L - R, y: y(data.noise_band), height: Math.max(0, y(-data.noise_band) - y(data.noise_band)) }));
  const axis = svg("g", { class: "axis" });
  for (const v of [-lim, 0, lim]) {
    const t = svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" });
    t.textContent = v.toFixed(2);
    axis.append(t);
  }
  // a lag label every 12 h, or every 24 h when 12 would not fit
  const every = bw * 12 >= 34 ? 12 : 24;
  lags.forEach((lag, i) => {
    if (lag % every === 0) {
      const t = svg("text", { x: L + bw * (i + 0.5), y: H - 6, "text-anchor": "middle" });
      t.textContent = `${lag > 0 ? "+" : ""}${lag}h`;
      axis.append(t);
    }
  });
  root.append(axis);
  lags.forEach((lag, i) => {
    const v = r[i];
    const best = lag === data.best_lag;
    root.append(svg("rect", { x: L + bw * i + 0.5, width: Math.max(1, bw - 1), y: Math.min(y(v), y(0)),
      height: Math.abs(y(v) - y(0)), fill: best ? "#c0362c" : Math.abs(v) > data.noise_band ? "#2c5db3" : "#a8b3c2",
      "data-lag": lag }));
  });
  root.append(svg("line", { class: "zero", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
  container.append(root);
}
