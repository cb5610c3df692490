// The Fermion console: plain JavaScript over the same HTTP API as the CLI, with the key in sessionStorage.
"use strict";
const KEY = "fermion-key";
const view = document.getElementById("view");
const status = document.getElementById("status");
let timer = null;

function esc(text) {
  const d = document.createElement("div");
  d.textContent = String(text ?? "");
  return d.innerHTML;
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
  view.innerHTML = "";
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

async function models() {
  const list = await api("/v1/models");
  view.innerHTML = `<h2>Models</h2><table><thead><tr><th scope="col">Model</th><th scope="col">Versions</th>
    <th scope="col">Aliases</th></tr></thead><tbody>${list.map((m) => `<tr>
    <td><a href="#model/${encodeURIComponent(m.name)}">${esc(m.name)}</a></td><td>${esc(m.versions.join(", "))}</td>
    <td>${esc(Object.entries(m.aliases).map(([a, v]) => `${a} → ${v}`).join(", "))}</td></tr>`).join("")}</tbody></table>`;
  say(`${list.length} model(s)`);
}

async function model(name) {
  const m = await api(`/v1/models/${encodeURIComponent(name)}`);
  const names = metricNames(m.versions);
  const aliases = Object.entries(m.aliases);
  view.innerHTML = `<h2>Model ${esc(name)}</h2>
    <h3>Aliases</h3><table><thead><tr><th scope="col">Alias</th><th scope="col">Version</th><th scope="col">Action</th></tr></thead>
    <tbody>${aliases.map(([a, v]) => `<tr><td>${esc(a)}</td><td>${esc(v)}</td><td>${a === "latest" ? "" :
      `<button data-rollback="${esc(a)}">Roll back ${esc(a)}</button>`}</td></tr>`).join("")}</tbody></table>
    <h3>Versions, metrics side by side</h3><table id="versions"><thead><tr><th scope="col">Compare</th><th scope="col">Version</th>
    <th scope="col">Created</th>${names.map((n) => `<th scope="col">${esc(n)}</th>`).join("")}<th scope="col">Training job</th>
    <th scope="col">Action</th></tr></thead><tbody>${m.versions.map((v) => `<tr>
    <td><input type="checkbox" aria-label="compare version ${v.version}" data-version="${v.version}"></td>
    <td>${v.version}</td><td>${esc(v.created_at)}</td>${names.map((n) => `<td>${v.metrics[n] === undefined ? "" :
      Number(v.metrics[n]).toFixed(4)}</td>`).join("")}<td>${v.training_event_id ?
      `<a href="#run/${encodeURIComponent(v.training_event_id)}">${esc(v.training_event_id.slice(0, 12))}</a>` : ""}</td>
    <td><button data-promote="${v.version}">Promote to production</button></td></tr>`).join("")}</tbody></table>
    <button id="compare">Compare selected versions</button><div id="comparison"></div>`;
  view.querySelectorAll("[data-promote]").forEach((b) => b.addEventListener("click", async () => {
    try {
      await api(`/v1/models/${encodeURIComponent(name)}/aliases/production`, {
        method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ version: Number(b.dataset.promote) }),
      });
      await model(name);
      say(`production → version ${b.dataset.promote}`);
    } catch (e) { say(`Promote refused: ${e.message}`, true); }
  }));
  view.querySelectorAll("[data-rollback]").forEach((b) => b.addEventListener("click", async () => {
    try {
      const r = await api(`/v1/models/${encodeURIComponent(name)}/aliases/${b.dataset.rollback}/rollback`, { method: "POST" });
      await model(name);
      say(`${r.alias} rolled back to version ${r.version}`);
    } catch (e) { say(`Rollback refused: ${e.message}`, true); }
  }));
  document.getElementById("compare").addEventListener("click", () => {
    const picked = [...view.querySelectorAll("[data-version]:checked")].map((c) => Number(c.dataset.version));
    const rows = m.versions.filter((v) => picked.includes(v.version));
    if (rows.length < 2) { say("Pick two or more versions to compare.", true); return; }
    document.getElementById("comparison").innerHTML = `<table id="version-comparison"><caption>Versions ${picked.join(" vs ")}</caption>
      <thead><tr><th scope="col">Metric</th>${rows.map((r) => `<th scope="col">v${r.version}</th>`).join("")}</tr></thead>
      <tbody>${names.map((n) => `<tr><th scope="row">${esc(n)}</th>${rows.map((r) => `<td>${r.metrics[n] === undefined ? "" :
        Number(r.metrics[n]).toFixed(4)}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
    say(`Comparing versions ${picked.join(", ")}`);
  });
  say(`${m.versions.length} version(s)`);
}

async function runs() {
  const list = await api("/v1/runs?limit=500");
  view.innerHTML = `<h2>Runs and jobs</h2><table id="runs"><thead><tr><th scope="col">Plot</th><th scope="col">Job</th>
    <th scope="col">Model</th><th scope="col">Status</th><th scope="col">Progress</th><th scope="col">Version</th>
    <th scope="col">Accuracy</th><th scope="col">Started</th></tr></thead><tbody>${list.map((r) => `<tr>
    <td><input type="checkbox" aria-label="plot run ${esc(r.job_id)}" data-job="${esc(r.job_id)}"></td>
    <td><a href="#run/${encodeURIComponent(r.job_id)}">${esc(r.job_id.slice(0, 12))}</a></td><td>${esc(r.model_name)}</td>
    <td>${esc(r.status)}${r.error ? `: ${esc(r.error.slice(0, 80))}` : ""}</td>
    <td><progress max="${r.parameters.epochs || 1}" value="${r.epochs_done}" aria-label="epochs of ${esc(r.job_id)}"></progress>
    ${r.epochs_done}/${esc(r.parameters.epochs ?? "?")}</td><td>${esc(r.version ?? "")}</td>
    <td>${r.metrics.accuracy === undefined ? "" : r.metrics.accuracy.toFixed(4)}</td><td>${esc(r.started)}</td></tr>`).join("")}
    </tbody></table><button id="plot">Plot selected runs</button><div class="charts" id="charts"></div>`;
  document.getElementById("plot").addEventListener("click", () => {
    const jobs = [...view.querySelectorAll("[data-job]:checked")].map((c) => c.dataset.job);
    if (!jobs.length) { say("Pick one or more runs to plot.", true); return; }
    plot(jobs, document.getElementById("charts"));
  });
  say(`${list.length} run(s)`);
  if (list.some((r) => r.status === "running")) timer = setTimeout(route, 2000); // live progress
}

async function plot(jobs, into) {
  const query = jobs.map((j) => `job=${encodeURIComponent(j)}`).join("&");
  const charts = await Promise.all(["loss", "accuracy"].map((m) => api(`/console/curves.svg?${query}&metric=${m}`)));
  into.innerHTML = charts.join("");
  say(`Plotted ${jobs.length} run(s)`);
}

async function run(job) {
  const r = await api(`/v1/runs/${encodeURIComponent(job)}`);
  view.innerHTML = `<h2>Run ${esc(job)}</h2><p>${esc(r.model_name)} · ${esc(r.status)} · version ${esc(r.version ?? "-")}</p>
    <h3>Parameters</h3><pre>${esc(JSON.stringify(r.parameters, null, 2))}</pre>
    <h3>Final metrics</h3><pre>${esc(JSON.stringify(r.metrics, null, 2))}</pre>
    ${r.error ? `<p class="error">${esc(r.error)}</p>` : ""}<h3>Curves</h3><div class="charts" id="charts"></div>`;
  await plot([job], document.getElementById("charts"));
  if (r.status === "running") timer = setTimeout(route, 2000);
}

async function dlq() {
  const list = await api("/v1/dlq");
  view.innerHTML = `<h2>Dead-lettered jobs</h2><table id="dlq"><thead><tr><th scope="col">Job</th><th scope="col">Model</th>
    <th scope="col">Reason</th><th scope="col">Deliveries</th><th scope="col">Action</th></tr></thead><tbody>${list.map((d) => `<tr>
    <td>${esc(d.job_id)}</td><td>${esc(d.model_name)}</td><td>${esc(d.reason)}</td><td>${esc(d.deliveries)}</td>
    <td><button data-retry="${esc(d.job_id)}" aria-label="retry ${esc(d.job_id)}">Retry</button></td></tr>`).join("")}</tbody></table>`;
  view.querySelectorAll("[data-retry]").forEach((b) => b.addEventListener("click", async () => {
    try {
      await api(`/v1/dlq/${encodeURIComponent(b.dataset.retry)}/retry`, { method: "POST" });
      say(`Job ${b.dataset.retry} published again`);
    } catch (e) { say(`Retry refused: ${e.message}`, true); }
  }));
  say(`${list.length} dead letter(s)`);
}

async function route() {
  clearTimeout(timer);
  if (!sessionStorage.getItem(KEY)) { showLogin(); return; }
  const [page, arg] = decodeURIComponent(location.hash.slice(1) || "models").split(/\/(.*)/s);
  try {
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
