// The Fermion console: plain JavaScript over the same HTTP API as the CLI, with the key in sessionStorage.
// Every value the API returns reaches the page through textContent or setAttribute, never through an
// HTML string: a job id, metric name or error message published by anyone stays text (issue 25), and
// the page runs under a CSP with no inline script (headers.py).
"use strict";
const KEY = "fermion-key";
const view = document.getElementById("view");
const status = document.getElementById("status");
const SVG_NS = "http://www.w3.org/2000/svg";
let timer = null;

// An element with attributes (setAttribute: no markup is parsed) and children (nodes, or strings as text).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (/^on/i.test(name)) throw new Error(`no inline handlers: ${name}`); // listeners via addEventListener
    if (value !== null && value !== undefined) el.setAttribute(name, String(value));
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined).map((c) => (c instanceof Node ? c : String(c))));
  return el;
}

// A link within the console: always a fragment, so no value can make it a javascript: or foreign URL.
function link(hash, text) {
  return h("a", { href: `#${hash}` }, text);
}

// A table: column heads, then rows of cells (a <td>/<th> as given, anything else wrapped in a <td>).
function table(attrs, heads, rows, caption = null) {
  const cell = (c) => (c instanceof HTMLTableCellElement ? c : h("td", {}, c));
  return h("table", attrs, caption === null ? null : h("caption", {}, caption),
    h("thead", {}, h("tr", {}, heads.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map(cell)))));
}

function show(...nodes) {
  view.replaceChildren(...nodes.filter((n) => n !== null));
}

// A button whose click runs `action`; a refusal is said as `refused: <why>`.
function button(attrs, text, refused, action) {
  const b = h("button", attrs, text);
  b.addEventListener("click", async () => {
    try { await action(); } catch (e) { say(`${refused}: ${e.message}`, true); }
  });
  return b;
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, ...(options.headers || {}) };
  const r = await fetch(path, { ...options, headers });
  if (r.status === 401) { sessionStorage.removeItem(KEY); showLogin("That key was refused."); throw new Error("401"); }
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error(body.error || `${r.status}`);
  return body;
}

function say(text, error = false) {
  status.textContent = text;
  status.className = error ? "error" : "";
}

function showLogin(message) {
  document.getElementById("login").hidden = false;
  view.replaceChildren();
  say(message || "Enter an API key to start.");
}

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("key").value.trim());
  document.getElementById("login").hidden = true;
  route();
});

function metricNames(rows) {
  return [...new Set(rows.flatMap((r) => Object.keys(r.metrics || {})))].sort();
}

// A metric's value to four places, or nothing (own keys only: a metric named "__proto__" is just a name).
function metric(metrics, name) {
  return metrics && Object.hasOwn(metrics, name) ? Number(metrics[name]).toFixed(4) : "";
}

async function models() {
  const list = await api("/v1/models");
  show(h("h2", {}, "Models"), table({}, ["Model", "Versions", "Aliases"], list.map((m) => [
    link(`model/${encodeURIComponent(m.name)}`, m.name),
    m.versions.join(", "),
    Object.entries(m.aliases).map(([a, v]) => `${a} → ${v}`).join(", "),
  ])));
  say(`${list.length} model(s)`);
}

async function model(name) {
  const m = await api(`/v1/models/${encodeURIComponent(name)}`);
  const names = metricNames(m.versions);
  const path = `/v1/models/${encodeURIComponent(name)}/aliases`;
  const aliases = Object.entries(m.aliases).map(([a, v]) => [a, v, a === "latest" ? "" :
    button({ "data-rollback": a }, `Roll back ${a}`, "Rollback refused", async () => {
      const r = await api(`${path}/${encodeURIComponent(a)}/rollback`, { method: "POST" });
      await model(name);
      say(`${r.alias} rolled back to version ${r.version}`);
    })]);
  const versions = m.versions.map((v) => [
    h("input", { type: "checkbox", "aria-label": `compare version ${v.version}`, "data-version": v.version }),
    v.version,
    v.created_at,
    ...names.map((n) => metric(v.metrics, n)),
    v.training_event_id ? link(`run/${encodeURIComponent(v.training_event_id)}`, v.training_event_id.slice(0, 12)) : "",
    button({ "data-promote": v.version }, "Promote to production", "Promote refused", async () => {
      await api(`${path}/production`, {
        method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ version: Number(v.version) }),
      });
      await model(name);
      say(`production → version ${v.version}`);
    }),
  ]);
  const comparison = h("div", { id: "comparison" });
  const compare = h("button", { id: "compare" }, "Compare selected versions");
  compare.addEventListener("click", () => {
    const picked = [...view.querySelectorAll("[data-version]:checked")].map((c) => Number(c.dataset.version));
    const rows = m.versions.filter((v) => picked.includes(v.version));
    if (rows.length < 2) { say("Pick two or more versions to compare.", true); return; }
    comparison.replaceChildren(table({ id: "version-comparison" }, ["Metric", ...rows.map((r) => `v${r.version}`)],
      names.map((n) => [h("th", { scope: "row" }, n), ...rows.map((r) => metric(r.metrics, n))]),
      `Versions ${picked.join(" vs ")}`));
    say(`Comparing versions ${picked.join(", ")}`);
  });
  show(h("h2", {}, `Model ${name}`),
    h("h3", {}, "Aliases"), table({}, ["Alias", "Version", "Action"], aliases),
    h("h3", {}, "Versions, metrics side by side"),
    table({ id: "versions" }, ["Compare", "Version", "Created", ...names, "Training job", "Action"], versions),
    compare, comparison);
  say(`${m.versions.length} version(s)`);
}

async function runs() {
  const list = await api("/v1/runs?limit=500");
  const rows = list.map((r) => {
    const epochs = r.parameters.epochs ?? "?";
    return [
      h("input", { type: "checkbox", "aria-label": `plot run ${r.job_id}`, "data-job": r.job_id }),
      link(`run/${encodeURIComponent(r.job_id)}`, r.job_id.slice(0, 12)),
      r.model_name,
      `${r.status}${r.error ? `: ${r.error.slice(0, 80)}` : ""}`,
      [h("progress", { max: Number(epochs) > 0 ? Number(epochs) : 1, value: Number(r.epochs_done) || 0,
        "aria-label": `epochs of ${r.job_id}` }), ` ${r.epochs_done}/${epochs}`],
      r.version ?? "",
      metric(r.metrics, "accuracy"),
      r.started,
    ];
  });
  const charts = h("div", { class: "charts", id: "charts" });
  const plotButton = h("button", { id: "plot" }, "Plot selected runs");
  plotButton.addEventListener("click", () => {
    const jobs = [...view.querySelectorAll("[data-job]:checked")].map((c) => c.dataset.job);
    if (!jobs.length) { say("Pick one or more runs to plot.", true); return; }
    plot(jobs, charts).catch((e) => say(e.message, true));
  });
  const heads = ["Plot", "Job", "Model", "Status", "Progress", "Version", "Accuracy", "Started"];
  show(h("h2", {}, "Runs and jobs"), table({ id: "runs" }, heads, rows), plotButton, charts);
  say(`${list.length} run(s)`);
  if (list.some((r) => r.status === "running")) timer = setTimeout(route, 2000); // live progress
}

// The server's SVG (every name in it escaped), parsed as XML, never as HTML; whatever could act is
// dropped before it joins the page (defence in depth: the CSP forbids inline script as well).
function chart(text) {
  const root = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
  if (root.namespaceURI !== SVG_NS || root.localName !== "svg") throw new Error("the curves could not be read");
  for (const el of [root, ...root.querySelectorAll("*")]) {
    if (el.namespaceURI !== SVG_NS || ["script", "foreignObject", "a", "use", "image"].includes(el.localName)) { el.remove(); continue; }
    for (const attr of [...el.attributes]) {
      if (/^on/i.test(attr.name) || /href$/i.test(attr.name)) el.removeAttribute(attr.name);
    }
  }
  return document.importNode(root, true);
}

async function plot(jobs, into) {
  const query = jobs.map((j) => `job=${encodeURIComponent(j)}`).join("&");
  const charts = await Promise.all(["loss", "accuracy"].map((m) => api(`/console/curves.svg?${query}&metric=${m}`)));
  into.replaceChildren(...charts.map(chart));
  say(`Plotted ${jobs.length} run(s)`);
}

async function run(job) {
  const r = await api(`/v1/runs/${encodeURIComponent(job)}`);
  const charts = h("div", { class: "charts", id: "charts" });
  show(h("h2", {}, `Run ${job}`), h("p", {}, `${r.model_name} · ${r.status} · version ${r.version ?? "-"}`),
    h("h3", {}, "Parameters"), h("pre", {}, JSON.stringify(r.parameters, null, 2)),
    h("h3", {}, "Final metrics"), h("pre", {}, JSON.stringify(r.metrics, null, 2)),
    r.error ? h("p", { class: "error" }, r.error) : null, h("h3", {}, "Curves"), charts);
  await plot([job], charts);
  if (r.status === "running") timer = setTimeout(route, 2000);
}

async function dlq() {
  const list = await api("/v1/dlq");
  const rows = list.map((d) => [d.job_id, d.model_name, d.reason, d.deliveries,
    button({ "data-retry": d.job_id, "aria-label": `retry ${d.job_id}` }, "Retry", "Retry refused", async () => {
      await api(`/v1/dlq/${encodeURIComponent(d.job_id)}/retry`, { method: "POST" });
      say(`Job ${d.job_id} published again`);
    })]);
  show(h("h2", {}, "Dead-lettered jobs"), table({ id: "dlq" }, ["Job", "Model", "Reason", "Deliveries", "Action"], rows));
  say(`${list.length} dead letter(s)`);
}

async function route() {
  clearTimeout(timer);
  if (!sessionStorage.getItem(KEY)) { showLogin(); return; }
  try {
    const [page, arg] = decodeURIComponent(location.hash.slice(1) || "models").split(/\/(.*)/s);
    if (page === "model") await model(arg);
    else if (page === "runs") await runs();
    else if (page === "run") await run(arg);
    else if (page === "dlq") await dlq();
    else await models();
  } catch (e) {
    if (e.message !== "401") say(e.message, true);
  }
}

window.addEventListener("hashchange", route);
route();
