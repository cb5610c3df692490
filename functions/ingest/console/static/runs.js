// Runs: grouped by sweep with their parameters as columns, sortable and filterable; a run's curves;
// runs compared (the parameters that differ first).
import { runCurves } from "./charts.js";
import { api, h, link, metric, param, progress, refresh, say, show, table, when } from "./dom.js";

const enc = encodeURIComponent;
const CONTEXT = ["architecture", "epochs", "learning_rate"]; // shown for every group, varying or not
const state = { filter: "", sort: { key: "started", dir: -1 }, picked: new Set() };

// The parameters that take more than one value within `runs` (a sweep's search space), then context.
function paramColumns(runs) {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.parameters || {})))].sort();
  const differ = keys.filter((k) => new Set(runs.map((r) => param(r.parameters[k]))).size > 1);
  return [...differ, ...CONTEXT.filter((k) => keys.includes(k) && !differ.includes(k))];
}

function sortValue(r, key) {
  if (key === "started") return r.started || "";
  if (key === "job") return r.job_id;
  if (key === "status") return r.status;
  if (key.startsWith("p:")) return r.parameters[key.slice(2)];
  if (key.startsWith("m:")) return r.metrics && Object.hasOwn(r.metrics, key.slice(2)) ? r.metrics[key.slice(2)] : null;
  return "";
}

function compareValues(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  return typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
}

// A column head that sorts its table (aria-sort says how).
function sortable(text, key, redraw) {
  const on = state.sort.key === key;
  const b = h("button", { type: "button", class: "sort" }, text, on ? (state.sort.dir > 0 ? " ▲" : " ▼") : "");
  b.addEventListener("click", () => {
    state.sort = { key, dir: on ? -state.sort.dir : 1 };
    redraw();
  });
  return h("th", { scope: "col", "aria-sort": on ? (state.sort.dir > 0 ? "ascending" : "descending") : "none" }, b);
}

function group(title, runs, redraw) {
  const params = paramColumns(runs);
  const metrics = [...new Set(runs.flatMap((r) => Object.keys(r.metrics || {})))].sort();
  const sorted = [...runs].sort((a, b) => state.sort.dir * compareValues(sortValue(a, state.sort.key), sortValue(b, state.sort.key)));
  const rows = sorted.map((r) => {
    const box = h("input", { type: "checkbox", "aria-label": `plot run ${r.job_id}`, "data-job": r.job_id });
    box.checked = state.picked.has(r.job_id);
    box.addEventListener("change", () => (box.checked ? state.picked.add(r.job_id) : state.picked.delete(r.job_id)));
    return [box, link(`run/${enc(r.job_id)}`, r.job_id), r.model_name,
      [h("span", { class: `state state-${r.status}` }, r.status), r.error ? h("p", { class: "reason" }, r.error) : null],
      progress(r.epochs_done, r.parameters.epochs ?? "?", r.job_id),
      ...params.map((k) => param(r.parameters[k])), ...metrics.map((m) => metric(r.metrics, m)),
      r.version ?? "", when(r.started)];
  });
  const heads = ["Plot", sortable("Job", "job", redraw), "Model", sortable("Status", "status", redraw), "Progress",
    ...params.map((k) => sortable(k, `p:${k}`, redraw)), ...metrics.map((m) => sortable(m, `m:${m}`, redraw)),
    "Version", sortable("Started", "started", redraw)];
  return h("section", { class: "group", "data-sweep": runs[0].sweep || "" }, h("h3", {}, title), table({ class: "runs", "aria-label": title }, heads, rows));
}

// A sweep's trials, and the winner's own training (its id is the sweep's with ".winner") apart.
function sweepTitle(sweep, rs) {
  const winner = rs.some((r) => r.job_id === `${sweep}.winner`);
  const trials = rs.length - (winner ? 1 : 0);
  return `Sweep ${sweep} (${trials} trials${winner ? ", then the winner retrained" : ""})`;
}

function matches(r, text) {
  if (!text) return true;
  const hay = [r.job_id, r.model_name, r.status, r.error, r.sweep, ...Object.entries(r.parameters || {}).map(([k, v]) => `${k}=${param(v)}`)];
  return hay.some((s) => s && String(s).toLowerCase().includes(text.toLowerCase()));
}

export async function runs() {
  const list = await api("/v1/runs?limit=500");
  const box = h("div", { id: "runs" });
  const draw = () => {
    const shown = list.filter((r) => matches(r, state.filter));
    const sweeps = new Map();
    for (const r of shown) { const k = r.sweep || ""; if (!sweeps.has(k)) sweeps.set(k, []); sweeps.get(k).push(r); }
    box.replaceChildren(...[...sweeps].sort(([a], [b]) => (a === "") - (b === "")).map(([sweep, rs]) =>
      group(sweep ? sweepTitle(sweep, rs) : `Runs outside a sweep (${rs.length})`, rs, draw)));
    say(`${shown.length} of ${list.length} run(s)`);
  };
  const filter = h("input", { id: "run-filter", type: "search", placeholder: "model, job, status, lr=0.01 …" });
  filter.value = state.filter;
  filter.addEventListener("input", () => { state.filter = filter.value; draw(); });
  const charts = h("div", { class: "charts", id: "charts" });
  const picked = () => [...state.picked].filter((j) => list.some((r) => r.job_id === j));
  const plot = h("button", { id: "plot", type: "button" }, "Plot selected runs");
  plot.addEventListener("click", () => {
    if (!picked().length) { say("Pick one or more runs to plot.", true); return; }
    plotRuns(picked(), charts).catch((e) => say(e.message, true));
  });
  const compare = h("button", { id: "compare-runs", type: "button" }, "Compare selected runs");
  compare.addEventListener("click", () => {
    if (picked().length < 2) { say("Pick two or more runs to compare.", true); return; }
    location.hash = `compare/${picked().map(enc).join("&")}`;
  });
  show(h("h2", {}, "Runs"), h("p", {}, h("label", { for: "run-filter" }, "Filter runs "), filter),
    box, h("p", {}, plot, compare), charts);
  draw();
  if (list.some((r) => r.status === "running")) refresh(() => runs().catch((e) => say(e.message, true)), 2000);
}

async function plotRuns(jobs, into) {
  const records = await Promise.all(jobs.map((j) => api(`/v1/runs/${enc(j)}`)));
  into.replaceChildren(...runCurves(records));
  say(`Plotted ${jobs.length} run(s)`);
}

function keyValues(id, obj, caption) {
  return table({ id }, ["Name", "Value"], Object.entries(obj || {}).map(([k, v]) => [h("th", { scope: "row" }, k), param(v)]), caption);
}

export async function run(job) {
  const r = await api(`/v1/runs/${enc(job)}`);
  const charts = h("div", { class: "charts", id: "charts" });
  show(h("h2", {}, `Run ${job}`),
    h("p", {}, `${r.model_name} · ${r.status} · version ${r.version ?? "-"} · started ${when(r.started)}`,
      r.finished ? ` · finished ${when(r.finished)}` : "", r.sweep ? [" · sweep ", r.sweep] : ""),
    r.error ? h("p", { class: "error" }, r.error) : null,
    h("h3", {}, "Curves"), charts,
    h("h3", {}, "Parameters"), keyValues("parameters", r.parameters, "Parameters"),
    h("h3", {}, "Final metrics"), keyValues("final-metrics", r.metrics, "Final metrics"));
  charts.replaceChildren(...runCurves([r]));
  say(`${r.epochs.length} epoch(s) recorded`);
  if (r.status === "running") refresh(() => run(job).catch((e) => say(e.message, true)), 2000);
}

export async function compare(jobs) {
  const c = await api(`/v1/runs/compare?${jobs.map((j) => `job=${enc(j)}`).join("&")}`);
  const differ = new Set(c.differing_parameters);
  const keys = [...new Set(c.runs.flatMap((r) => Object.keys(r.parameters)))].sort((a, b) => differ.has(b) - differ.has(a) || a.localeCompare(b));
  const heads = ["Parameter", ...c.runs.map((r) => r.job_id)];
  const rows = keys.map((k) => h("tr", { class: differ.has(k) ? "differs" : "" }, h("th", { scope: "row" }, differ.has(k) ? `${k} (differs)` : k),
    ...c.runs.map((r) => h("td", {}, param(r.parameters[k])))));
  const names = [...new Set(c.runs.flatMap((r) => Object.keys(r.metrics || {})))].sort();
  const charts = h("div", { class: "charts", id: "charts" });
  show(h("h2", {}, `Comparing ${c.runs.length} runs`),
    h("p", {}, differ.size ? `Parameters that differ: ${[...differ].join(", ")}` : "No parameter differs."),
    table({ id: "run-comparison" }, heads, rows, "Parameters, those that differ first"),
    table({ id: "metric-comparison" }, ["Metric", ...c.runs.map((r) => r.job_id)],
      names.map((n) => [h("th", { scope: "row" }, n), ...c.runs.map((r) => metric(r.metrics, n))]), "Final metrics"),
    charts);
  charts.replaceChildren(...runCurves(c.runs));
  say(`Comparing ${c.runs.map((r) => r.job_id).join(", ")}`);
}
