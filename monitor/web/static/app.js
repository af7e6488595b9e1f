// hashtag-monitor dashboard: plain JS, draws SVG from /api/*. No dependencies, no build.
// Every string from the server goes into the page through textContent or an SVG
// attribute, never through innerHTML, so post text and tag names cannot inject markup.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#2c5db3", "#c0362c", "#1a7f37", "#9a6700", "#8250df", "#0a7d8c",
  "#bf3989", "#57606a", "#d4731c", "#3d6b2a", "#6b3d8c", "#1f6feb"];
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, String(v));
  }
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function fmtMean(v) {
  return v === null || v === undefined ? "–" : (v >= 0 ? "+" : "") + v.toFixed(3);
}
function fmtPct(v) { return (v * 100).toFixed(1) + "%"; }
function fmtInt(v) { return Number(v).toLocaleString("en-US"); }
function toneClass(v) { return v === null || v === undefined ? "" : v >= 0.05 ? "pos" : v <= -0.05 ? "neg" : ""; }

function fmtTime(iso, stepSeconds) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  if (stepSeconds >= 86400) return day;
  return `${day} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

function setStatus(text, isError) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("error", Boolean(isError));
}

async function api(path, params) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of params || []) if (v !== undefined && v !== null && v !== "") url.searchParams.append(k, v);
  const resp = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (!resp.ok) {
    const msg = body && body.error ? body.error : `${resp.status} ${resp.statusText}`;
    throw new Error(`${url.pathname}: ${msg}`);
  }
  return body;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// A line chart: series = [{name, color, values: [number|null]}], times = ISO strings.
function lineChart(container, times, series, opts) {
  container.replaceChildren();
  const W = 960, H = opts.height || 220, L = 52, R = 12, T = 10, B = 26;
  const n = times.length;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.label,
    "data-points": n, "data-series": series.length });
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const yMin = opts.yMin, yMax = opts.yMax;
  const y = (v) => T + (H - T - B) * (1 - (v - yMin) / (yMax - yMin || 1));
  const grid = svg("g", { class: "grid axis" });
  // whole-number ticks for counts: 5 divisions when they divide the top evenly
  const div = opts.integer ? ([5, 4, 2].find((d) => (yMax - yMin) % d === 0 && (yMax - yMin) / d >= 1) || 1) : 4;
  for (let k = 0; k <= div; k++) {
    const v = yMin + ((yMax - yMin) * k) / div;
    grid.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const label = svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" });
    label.textContent = opts.integer ? fmtInt(Math.round(v)) : v.toFixed(2);
    grid.append(label);
  }
  const ticks = Math.min(6, n);
  for (let k = 0; k < ticks; k++) {
    const i = ticks === 1 ? 0 : Math.round((k * (n - 1)) / (ticks - 1));
    const label = svg("text", { x: x(i), y: H - 6, "text-anchor": k === 0 ? "start" : k === ticks - 1 ? "end" : "middle" });
    label.textContent = fmtTime(times[i], opts.step);
    grid.append(label);
  }
  root.append(grid);
  if (opts.zero) root.append(svg("line", { class: "zero", x1: L, x2: W - R, y1: y(0), y2: y(0) }));
  for (const s of series) {
    let d = "", pen = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    // a single isolated point draws as a dot so it is not invisible
    const path = svg("path", { d: d || "M0,0", fill: "none", stroke: s.color, "stroke-width": 1.8,
      "stroke-linejoin": "round", "data-tag": s.name, "data-total": s.total === undefined ? "" : s.total });
    root.append(path);
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
  const tip = el("div", { class: "tooltip" });
  container.append(tip);
  const legend = el("div", { class: "legend" });
  for (const s of series) {
    const item = el("span", { "data-tag": s.name }, s.legend || s.name);
    item.style.setProperty("--swatch", s.color);
    legend.append(item);
  }
  container.append(legend);
  root.addEventListener("mousemove", (ev) => {
    const box = root.getBoundingClientRect();
    const px = ((ev.clientX - box.left) / box.width) * W;
    const i = Math.max(0, Math.min(n - 1, Math.round(((px - L) / (W - L - R)) * (n - 1))));
    cursor.setAttribute("x1", x(i)); cursor.setAttribute("x2", x(i)); cursor.setAttribute("visibility", "visible");
    const lines = [fmtTime(times[i], opts.step)];
    for (const s of series) lines.push(`${s.name}: ${opts.integer ? fmtInt(s.values[i] || 0) : fmtMean(s.values[i])}`);
    tip.textContent = lines.join("\n");
    tip.style.display = "block";
    tip.style.left = `${Math.min(box.width - 160, Math.max(0, (x(i) / W) * box.width + 10))}px`;
    tip.style.top = "8px";
  });
  root.addEventListener("mouseleave", () => { tip.style.display = "none"; cursor.setAttribute("visibility", "hidden"); });
}

// Bars of r over lags, with the ±noise band and the best lag marked.
function xcorrChart(container, data) {
  container.replaceChildren();
  const W = 960, H = 180, L = 40, R = 10, T = 10, B = 24;
  const lags = data.lags, r = data.r, n = lags.length;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "cross-correlation by lag",
    "data-best-lag": data.best_lag === null ? "" : data.best_lag, "data-points": n });
  const lim = Math.max(0.2, niceMax(Math.max(...r.map(Math.abs), data.noise_band) * 1.1));
  const y = (v) => T + (H - T - B) * (1 - (v + lim) / (2 * lim));
  const bw = (W - L - R) / n;
  root.append(svg("rect", { class: "band", x: L, width: W - L - R, y: y(data.noise_band), height: Math.max(0, y(-data.noise_band) - y(data.noise_band)) }));
  const axis = svg("g", { class: "axis" });
  for (const v of [-lim, 0, lim]) {
    const t = svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" });
    t.textContent = v.toFixed(2);
    axis.append(t);
  }
  lags.forEach((lag, i) => {
    if (lag % 12 === 0) {
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

function cell(row, text, cls) { const td = el("td", cls ? { class: cls } : {}, text); row.append(td); return td; }
function emptyRow(tbody, cols, text) { const tr = el("tr"); tr.append(el("td", { colspan: cols, class: "empty" }, text)); tbody.append(tr); }

const state = { tags: [], colors: new Map() };

function colorOf(tag) {
  if (!state.colors.has(tag)) state.colors.set(tag, COLORS[state.colors.size % COLORS.length]);
  return state.colors.get(tag);
}

function selectedTags() {
  return [...document.querySelectorAll("#tag-picker input:checked")].map((i) => i.value);
}

function rangeParams() {
  const range = $("#range").value;
  if (range !== "custom") return [["since", range]];
  const from = $("#from").value, to = $("#to").value;
  const out = [];
  if (from) out.push(["since", from]);
  if (to) out.push(["until", to]);
  return out;
}

function fillSelect(select, tags, chosen) {
  select.replaceChildren();
  for (const t of tags) {
    const o = el("option", { value: t }, "#" + t);
    if (t === chosen) o.selected = true;
    select.append(o);
  }
}

async function loadSeries() {
  const tags = selectedTags();
  if (!tags.length) { setStatus("Pick at least one tag.", true); return; }
  const data = await api("/api/series", [...tags.map((t) => ["tag", t]), ...rangeParams(), ["step", $("#step").value]]);
  const first = data.series[0];
  const times = first ? first.points.map((p) => p[0]) : [];
  const vol = data.series.map((s) => ({ name: s.tag, color: colorOf(s.tag), total: s.posts,
    legend: `#${s.tag} · ${fmtInt(s.posts)} posts`, values: s.points.map((p) => p[1]) }));
  const maxV = Math.max(1, ...vol.flatMap((s) => s.values));
  lineChart($("#volume-chart"), times, vol, { label: "posts per step", yMin: 0, yMax: niceMax(maxV), integer: true, step: data.step_seconds });
  const sent = data.series.map((s) => ({ name: s.tag, color: colorOf(s.tag),
    legend: `#${s.tag} · mean ${fmtMean(s.mean_compound)}`, values: s.points.map((p) => p[3]) }));
  lineChart($("#sentiment-chart"), times, sent, { label: "mean sentiment per step", yMin: -1, yMax: 1, zero: true, step: data.step_seconds });
  const tbody = $("#totals tbody");
  tbody.replaceChildren();
  for (const s of data.series) {
    const tr = el("tr", { "data-tag": s.tag });
    cell(tr, "#" + s.tag);
    cell(tr, fmtInt(s.posts), "num").setAttribute("data-field", "posts");
    cell(tr, fmtInt(s.scored), "num").setAttribute("data-field", "scored");
    cell(tr, fmtMean(s.mean_compound), "num " + toneClass(s.mean_compound)).setAttribute("data-field", "mean");
    cell(tr, fmtInt(s.positive), "num");
    cell(tr, fmtInt(s.neutral), "num");
    cell(tr, fmtInt(s.negative), "num");
    tbody.append(tr);
  }
  $("#volume-chart").setAttribute("data-since", data.since);
  $("#volume-chart").setAttribute("data-step", data.step_seconds);
}

async function loadAlerts() {
  const data = await api("/api/alerts", [["state", $("#alert-state").value]]);
  const tbody = $("#alerts tbody");
  tbody.replaceChildren();
  if (!data.alerts.length) { emptyRow(tbody, 6, "No alerts."); return; }
  for (const a of data.alerts) {
    const tr = el("tr", { "data-alert": a.id });
    cell(tr, a.state, "state-" + a.state);
    cell(tr, a.rule);
    cell(tr, Object.entries(a.labels || {}).map(([k, v]) => `${k}=${v}`).join(" "));
    cell(tr, a.fired_at || a.active_since ? fmtTime(a.fired_at || a.active_since, 60) + " UTC" : "–");
    cell(tr, a.value === null ? "–" : Number(a.value).toPrecision(3), "num");
    cell(tr, a.summary || "");
    tbody.append(tr);
  }
}

async function loadCotags() {
  const tag = $("#cotag-focus").value;
  if (!tag) return;
  const range = $("#range").value === "custom" ? rangeParams() : [["since", $("#range").value]];
  const data = await api("/api/cotags", [["tag", tag], ...range, ["limit", 15]]);
  const tbody = $("#cotags tbody");
  tbody.replaceChildren();
  if (!data.cotags.length) { emptyRow(tbody, 4, "No co-occurring tags in this range."); return; }
  for (const c of data.cotags) {
    const tr = el("tr", { "data-tag": c.tag });
    cell(tr, "#" + c.tag);
    cell(tr, fmtInt(c.posts), "num");
    cell(tr, fmtPct(c.share), "num");
    cell(tr, fmtMean(c.mean_compound), "num " + toneClass(c.mean_compound));
    tbody.append(tr);
  }
}

async function loadRelate() {
  const a = $("#relate-a").value, b = $("#relate-b").value;
  const summary = $("#relate-summary");
  const tbody = $("#relate-tone tbody");
  if (!a || !b || a === b) {
    summary.textContent = "Pick two different tags.";
    $("#relate-chart").replaceChildren(); tbody.replaceChildren(); $("#relate-shares").textContent = "";
    return;
  }
  let data;
  try {
    data = await api("/api/relate", [["a", a], ["b", b], ["since", $("#relate-range").value]]);
  } catch (err) {
    summary.textContent = err.message;
    $("#relate-chart").replaceChildren(); tbody.replaceChildren(); $("#relate-shares").textContent = "";
    return;
  }
  summary.textContent = data.summary + ` — positive lag: #${b} follows #${a}; ${data.points} hourly points, noise band ±${data.noise_band.toFixed(2)}.`;
  summary.setAttribute("data-best-lag", data.best_lag_hours === null ? "" : data.best_lag_hours);
  xcorrChart($("#relate-chart"), { lags: data.lags, r: data.r, best_lag: data.best_lag_hours, noise_band: data.noise_band });
  $("#relate-shares").textContent = `#${a}: ${fmtInt(data.posts_a)} posts · #${b}: ${fmtInt(data.posts_b)} posts · both: ${fmtInt(data.posts_both)} (${fmtPct(data.share_both)} of posts with either; ${fmtPct(data.share_of_a)} of #${a}, ${fmtPct(data.share_of_b)} of #${b})`;
  tbody.replaceChildren();
  for (const t of [data.tone_a, data.tone_b]) {
    const tr = el("tr", { "data-tag": t.tag });
    cell(tr, "#" + t.tag);
    cell(tr, fmtInt(t.posts), "num");
    cell(tr, fmtInt(t.with_other), "num");
    cell(tr, fmtMean(t.mean_with), "num " + toneClass(t.mean_with));
    cell(tr, fmtInt(t.without_other), "num");
    cell(tr, fmtMean(t.mean_without), "num " + toneClass(t.mean_without));
    cell(tr, fmtMean(t.difference), "num");
    tbody.append(tr);
  }
}

async function loadPosts() {
  const tag = $("#cotag-focus").value;
  if (!tag) return;
  const data = await api("/api/posts", [["tag", tag], ["limit", 10]]);
  const list = $("#posts");
  list.replaceChildren();
  $("#posts-note").textContent = `#${tag}` + (data.text_stored ? "" : " · text is not stored (privacy.store_text: false)");
  if (!data.posts.length) { list.append(el("li", { class: "empty" }, "No posts.")); return; }
  for (const p of data.posts) {
    const li = el("li");
    const meta = el("div", { class: "meta" }, `${fmtTime(p.created_at, 60)} UTC · ${p.platform} · ${p.lang || "?"} · compound ${fmtMean(p.compound)} `);
    if (p.url && /^https?:\/\//i.test(p.url)) {
      const link = el("a", { href: p.url, rel: "noopener noreferrer nofollow", target: "_blank" }, "open");
      meta.append(link);
    }
    li.append(meta);
    if (p.text !== null && p.text !== undefined) {
      if (p.sensitive) {
        const det = el("details");
        det.append(el("summary", {}, "sensitive content"));
        det.append(el("div", { class: "text" }, p.text));
        li.append(det);
      } else {
        li.append(el("div", { class: "text" }, p.text));
      }
    }
    list.append(li);
  }
}

function writeUrl() {
  const q = new URLSearchParams();
  q.set("tags", selectedTags().join(","));
  for (const [k, v] of rangeParams()) q.set(k, v);
  q.set("step", $("#step").value);
  history.replaceState(null, "", "?" + q.toString());
}

async function refresh() {
  document.body.removeAttribute("data-ready");
  setStatus("Loading…");
  writeUrl();
  const results = await Promise.allSettled([loadSeries(), loadAlerts(), loadCotags(), loadRelate(), loadPosts()]);
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  if (failed.length) setStatus(failed.join(" · "), true);
  else setStatus(`Updated ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC`);
  document.body.setAttribute("data-ready", failed.length ? "error" : "1");
}

async function init() {
  const q = new URLSearchParams(window.location.search);
  let info;
  try {
    info = await api("/api/tags");
  } catch (err) {
    setStatus(err.message, true);
    document.body.setAttribute("data-ready", "error");
    return;
  }
  const all = [...new Set([...info.followed, ...info.busy.map((b) => b.tag)])];
  const wanted = q.get("tags") ? q.get("tags").split(",").filter(Boolean) : info.followed;
  for (const t of wanted) if (!all.includes(t)) all.push(t);
  state.tags = all;
  const picker = $("#tag-picker");
  for (const t of all) {
    const id = "tag-" + all.indexOf(t);
    const box = el("input", { type: "checkbox", id, value: t });
    box.checked = wanted.includes(t);
    const label = el("label", { for: id }, "#" + t);
    label.prepend(box);
    picker.append(label);
    colorOf(t);
  }
  if (q.get("since")) {
    const range = $("#range");
    if ([...range.options].some((o) => o.value === q.get("since"))) range.value = q.get("since");
    else { range.value = "custom"; $("#from").value = q.get("since").slice(0, 10); if (q.get("until")) $("#to").value = q.get("until").slice(0, 10); }
  }
  if (q.get("step")) $("#step").value = q.get("step");
  $("#controls").classList.toggle("custom", $("#range").value === "custom");
  fillSelect($("#cotag-focus"), all, wanted[0]);
  fillSelect($("#relate-a"), all, wanted[0] || all[0]);
  fillSelect($("#relate-b"), all, wanted[1] || all[1]);
  $("#controls").addEventListener("submit", (ev) => { ev.preventDefault(); refresh(); });
  $("#range").addEventListener("change", () => { $("#controls").classList.toggle("custom", $("#range").value === "custom"); if ($("#range").value !== "custom") refresh(); });
  $("#step").addEventListener("change", refresh);
  $("#alert-state").addEventListener("change", () => loadAlerts().catch((e) => setStatus(e.message, true)));
  $("#cotag-focus").addEventListener("change", () => Promise.all([loadCotags(), loadPosts()]).catch((e) => setStatus(e.message, true)));
  for (const id of ["#relate-a", "#relate-b", "#relate-range"]) $(id).addEventListener("change", () => loadRelate().catch((e) => setStatus(e.message, true)));
  await refresh();
}

document.addEventListener("DOMContentLoaded", init);
