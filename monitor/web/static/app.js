// hashtag-monitor dashboard: plain JS over /api/*; the charts are in charts.js (loaded
// first). No dependencies, no build.
// Every string from the server goes into the page through textContent or an SVG
// attribute, never through innerHTML, so post text and tag names cannot inject markup.
"use strict";

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

function fmtPct(v) { return (v * 100).toFixed(1) + "%"; }
function toneClass(v) { return v === null || v === undefined ? "" : v >= 0.05 ? "pos" : v <= -0.05 ? "neg" : ""; }

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

function cell(row, text, cls) { const td = el("td", cls ? { class: cls } : {}, text); row.append(td); return td; }
function emptyRow(tbody, cols, text) { const tr = el("tr"); tr.append(el("td", { colspan: cols, class: "empty" }, text)); tbody.append(tr); }

// lastSeries/lastRelate: what the charts show, to redraw them when the width changes
const state = { tags: [], colors: new Map(), lastSeries: null, lastRelate: null, width: 0 };

function colorOf(tag) {
  if (!state.colors.has(tag)) state.colors.set(tag, COLORS[state.colors.size % COLORS.length]);
  return state.colors.get(tag);
}

function selectedTags() {
  return [...document.querySelectorAll("#tag-picker input:checked")].map((i) => i.value);
}

const DURATION = /^\d+(\.\d+)?[smhdw]$/;

// A datetime-local value ("YYYY-MM-DDTHH:MM", UTC) for an ISO date or time from the URL.
function toLocalInput(value) {
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) return value + "T00:00";
  const zoned = /(Z|[+-]\d{2}:?\d{2})$/.test(value);
  const ms = Date.parse(zoned ? value : value.replace(" ", "T") + "Z");
  return Number.isNaN(ms) ? "" : new Date(ms).toISOString().slice(0, 16);
}

// …and back for the URL: a whole day is written as the date alone
function fromLocalInput(value) {
  return value.endsWith("T00:00") ? value.slice(0, 10) : value;
}

function rangeParams() {
  const range = $("#range").value;
  if (range !== "custom") return [["since", range]];
  const from = $("#from").value, to = $("#to").value;
  const out = [];
  if (from) out.push(["since", fromLocalInput(from)]);
  if (to) out.push(["until", fromLocalInput(to)]);
  return out;
}

// Make sure a select offers *value* (a duration from a link, like since=12h or step=15m).
function ensureOption(select, value, label) {
  if (![...select.options].some((o) => o.value === value)) {
    const custom = select.querySelector("option[value='custom']");
    select.insertBefore(el("option", { value, "data-from-url": "1" }, label), custom);
  }
  select.value = value;
}

function fillSelect(select, tags, chosen) {
  select.replaceChildren();
  for (const t of tags) {
    const o = el("option", { value: t }, "#" + t);
    if (t === chosen) o.selected = true;
    select.append(o);
  }
}

// In the narrow layout a table row becomes a card: each cell shows its column's name.
function labelCells(table) {
  const names = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
  for (const tr of table.querySelectorAll("tbody tr")) {
    [...tr.children].forEach((td, i) => { if (!td.hasAttribute("colspan")) td.setAttribute("data-label", names[i] || ""); });
  }
}

function drawSeries() {
  const { data, marks } = state.lastSeries;
  const first = data.series[0];
  const times = first ? first.points.map((p) => p[0]) : [];
  const vol = data.series.map((s) => ({ name: s.tag, color: colorOf(s.tag), total: s.posts,
    legend: `#${s.tag} · ${fmtInt(s.posts)} posts`, values: s.points.map((p) => p[1]) }));
  const maxV = Math.max(1, ...vol.flatMap((s) => s.values));
  lineChart($("#volume-chart"), times, vol, { label: "posts per step", yMin: 0, yMax: niceMax(maxV), integer: true, step: data.step_seconds, marks });
  const sent = data.series.map((s) => ({ name: s.tag, color: colorOf(s.tag),
    legend: `#${s.tag} · mean ${fmtMean(s.mean_compound)}`, values: s.points.map((p) => p[3]) }));
  lineChart($("#sentiment-chart"), times, sent, { label: "mean sentiment per step", yMin: -1, yMax: 1, zero: true, step: data.step_seconds, marks });
}

async function loadSeries() {
  const tags = selectedTags();
  if (!tags.length) { setStatus("Pick at least one tag.", true); return; }
  const range = rangeParams();
  // the series and the alerts of the same tags over the same range, for the markers
  const [data, alerts] = await Promise.all([
    api("/api/series", [...tags.map((t) => ["tag", t]), ...range, ["step", $("#step").value]]),
    api("/api/alerts", [["state", "all"], ...tags.map((t) => ["tag", t]), ...range, ["limit", 200]]),
  ]);
  state.lastSeries = { data, marks: alerts.alerts };
  drawSeries();
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
  labelCells($("#totals"));
  $("#volume-chart").setAttribute("data-since", data.since);
  $("#volume-chart").setAttribute("data-until", data.until);
  $("#volume-chart").setAttribute("data-step", data.step_seconds);
}

async function loadAlerts() {
  const data = await api("/api/alerts", [["state", $("#alert-state").value]]);
  const tbody = $("#alerts tbody");
  tbody.replaceChildren();
  if (!data.alerts.length) { emptyRow(tbody, 6, "No alerts."); return; }
  for (const a of data.alerts) {
    const tr = el("tr", { "data-alert": a.id });
    cell(tr, a.state, "state state-" + a.state);
    cell(tr, a.rule);
    cell(tr, Object.entries(a.labels || {}).map(([k, v]) => `${k}=${v}`).join(" "), "text");
    cell(tr, a.fired_at || a.active_since ? fmtTime(a.fired_at || a.active_since, 60) + " UTC" : "–", "when");
    cell(tr, a.value === null ? "–" : Number(a.value).toPrecision(3), "num");
    cell(tr, a.summary || "", "text");
    tbody.append(tr);
  }
  labelCells($("#alerts"));
}

async function loadCotags() {
  const tag = $("#cotag-focus").value;
  if (!tag) return;
  const data = await api("/api/cotags", [["tag", tag], ...rangeParams(), ["limit", 15]]);
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
  // the finding (or why there is none), then how to read the chart: the sign is a convention
  summary.textContent = data.lags.length
    ? `${data.summary}. ${data.convention} Over the ${data.points} hours both tags have posts; the best lag of unrelated series passes ±${data.noise_band.toFixed(2)} 5% of the time.`
    : `${data.summary}.`;
  summary.setAttribute("data-best-lag", data.best_lag_hours === null ? "" : data.best_lag_hours);
  state.lastRelate = { lags: data.lags, r: data.r, best_lag: data.best_lag_hours, noise_band: data.noise_band };
  xcorrChart($("#relate-chart"), state.lastRelate);
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
  labelCells($("#relate-tone"));
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

// The view's URL: tags, since/until and step, so a link reproduces what is shown.
function viewQuery() {
  const q = new URLSearchParams();
  q.set("tags", selectedTags().join(","));
  for (const [k, v] of rangeParams()) q.set(k, v);
  q.set("step", $("#step").value);
  return "?" + q.toString();
}

// Set the controls from a URL query: tags=a,b (or tag=a&tag=b), since, until, step.
function applyQuery(search) {
  const q = new URLSearchParams(search);
  const listed = q.get("tags") !== null ? q.get("tags").split(",") : q.getAll("tag");
  const wanted = listed.map((t) => t.trim().replace(/^#/, "").toLowerCase()).filter(Boolean);
  if (wanted.length) {
    for (const t of wanted) if (!state.tags.includes(t)) addTagBox(t);
    for (const box of document.querySelectorAll("#tag-picker input")) box.checked = wanted.includes(box.value);
  }
  const since = q.get("since"), until = q.get("until");
  const range = $("#range");
  if (since && DURATION.test(since) && !until) {
    ensureOption(range, since, `last ${since}`);
  } else if (since) {
    range.value = "custom";
    let from = since;
    if (DURATION.test(since)) {
      // "7d before until": the same range as absolute times, as the API computes it
      const units = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
      const end = Date.parse(toLocalInput(until) + "Z");
      from = new Date(end - parseFloat(since) * units[since.slice(-1)] * 1000).toISOString();
    }
    $("#from").value = toLocalInput(from);
    $("#to").value = until ? toLocalInput(until) : "";
  }
  const step = q.get("step");
  if (step) ensureOption($("#step"), step, step);
  $("#controls").classList.toggle("custom", range.value === "custom");
  return wanted;
}

function addTagBox(t) {
  state.tags.push(t);
  const id = "tag-" + (state.tags.length - 1);
  const box = el("input", { type: "checkbox", id, value: t });
  const label = el("label", { for: id }, "#" + t);
  label.prepend(box);
  $("#tag-picker").append(label);
  colorOf(t);
}

// push: the user changed the view (a new history entry); otherwise the address is only
// brought in line with the controls (first load, back/forward)
async function refresh(push) {
  document.body.removeAttribute("data-ready");
  setStatus("Loading…");
  const query = viewQuery();
  if (query !== window.location.search) {
    if (push) history.pushState(null, "", query);
    else history.replaceState(null, "", query);
  }
  const results = await Promise.allSettled([loadSeries(), loadAlerts(), loadCotags(), loadRelate(), loadPosts()]);
  const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  if (failed.length) setStatus(failed.join(" · "), true);
  else setStatus(`Updated ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC`);
  document.body.setAttribute("data-ready", failed.length ? "error" : "1");
}

// Charts are drawn at their pixel width: draw them again when it changes.
function redrawOnResize() {
  let timer = null;
  window.addEventListener("resize", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const width = $("#volume-chart").clientWidth;
      if (width === state.width) return;
      state.width = width;
      if (state.lastSeries) drawSeries();
      if (state.lastRelate && $("#relate-chart svg")) xcorrChart($("#relate-chart"), state.lastRelate);
    }, 150);
  });
}

async function init() {
  let info;
  try {
    info = await api("/api/tags");
  } catch (err) {
    setStatus(err.message, true);
    document.body.setAttribute("data-ready", "error");
    return;
  }
  for (const t of new Set([...info.followed, ...info.busy.map((b) => b.tag)])) addTagBox(t);
  for (const box of document.querySelectorAll("#tag-picker input")) box.checked = info.followed.includes(box.value);
  const fromUrl = applyQuery(window.location.search);
  const wanted = fromUrl.length ? fromUrl : info.followed;
  const all = state.tags;
  fillSelect($("#cotag-focus"), all, wanted[0]);
  fillSelect($("#relate-a"), all, wanted[0] || all[0]);
  fillSelect($("#relate-b"), all, wanted[1] || all[1]);
  state.width = $("#volume-chart").clientWidth;
  $("#controls").addEventListener("submit", (ev) => { ev.preventDefault(); refresh(true); });
  $("#range").addEventListener("change", () => { $("#controls").classList.toggle("custom", $("#range").value === "custom"); if ($("#range").value !== "custom") refresh(true); });
  $("#step").addEventListener("change", () => refresh(true));
  $("#alert-state").addEventListener("change", () => loadAlerts().catch((e) => setStatus(e.message, true)));
  $("#cotag-focus").addEventListener("change", () => Promise.all([loadCotags(), loadPosts()]).catch((e) => setStatus(e.message, true)));
  for (const id of ["#relate-a", "#relate-b", "#relate-range"]) $(id).addEventListener("change", () => loadRelate().catch((e) => setStatus(e.message, true)));
  // back and forward walk through the views the user chose
  window.addEventListener("popstate", () => { applyQuery(window.location.search); refresh(false); });
  redrawOnResize();
  await refresh(false);
}

document.addEventListener("DOMContentLoaded", init);
