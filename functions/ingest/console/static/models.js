// Models: which version serves each alias, every version's metrics side by side, and a version's
// evaluation (confusion matrix, per-class scores).
import { confusionMatrix, perClass, residualCharts } from "./charts.js";
import { api, button, confirmed, h, link, metric, metricNames, say, show, table, view, when } from "./dom.js";
import { liveSplit, servingSection, splitText } from "./rollouts.js";

const enc = encodeURIComponent;

// What alias `a` (pointing at version `v`) serves: its version, or its live split while traffic is split.
const served = (splits, a, v) => (Object.hasOwn(splits, a) && Object.keys(splits[a]).length > 1
  ? `v${v} (split: ${splitText(splits[a])})` : `v${v}`);

export async function models() {
  const list = await api("/v1/models");
  show(h("h2", {}, "Models"), table({ id: "models" }, ["Model", "Serving", "Versions"], list.map((m) => [
    link(`model/${enc(m.name)}`, m.name),
    Object.entries(m.aliases).map(([a, v]) => `${a} → ${served(m.splits || {}, a, v)}`).join(", "),
    m.versions.join(", "),
  ])));
  say(`${list.length} model(s)`);
}

async function evaluation(name, version, into) {
  const m = await api(`/v1/models/${enc(name)}/versions/${enc(version)}`);
  const ev = m.evaluation;
  const shown = ev?.residuals ? residualCharts(ev, version)
    : ev ? [confusionMatrix(ev, `Confusion matrix of version ${version} (held-out split)`),
      perClass(ev, `Per-class scores of version ${version}`)]
    : [h("p", { class: "hint" }, "This version recorded no evaluation (trained before it was kept).")];
  into.replaceChildren(h("h3", { id: "evaluation-h" }, `Evaluation of version ${version}`), ...shown);
}

export async function model(name) {
  const m = await api(`/v1/models/${enc(name)}`);
  const names = metricNames(m.versions);
  const path = `/v1/models/${enc(name)}/aliases`;
  const serving = {}; // version → the aliases it serves, with its share where traffic is split
  const splits = m.splits || {};
  for (const [a, v] of Object.entries(m.aliases)) {
    const split = Object.hasOwn(splits, a) ? splits[a] : { [v]: 100 };
    for (const [sv, w] of Object.entries(split)) (serving[sv] ||= []).push(w === 100 ? a : `${a} ${w}%`);
  }
  const aliases = Object.entries(m.aliases).map(([a, v]) => [a, served(splits, a, v), a === "latest" ? "" :
    confirmed({ "data-rollback": a }, `Roll back ${a}`, `Confirm: roll back ${a}?`, "Rollback refused", async () => {
      const r = await api(`${path}/${enc(a)}/rollback`, { method: "POST" });
      await model(name);
      say(`${r.alias} rolled back to version ${r.version}`);
    })]);
  const servingBox = await servingSection(name).catch((e) => h("p", { class: "error", id: "serving" }, `Serving unavailable: ${e.message}`));
  const evalBox = h("section", { id: "evaluation", "aria-labelledby": "evaluation-h" });
  const versions = m.versions.map((v) => [
    h("input", { type: "checkbox", "aria-label": `compare version ${v.version}`, "data-version": v.version }),
    v.version,
    (serving[v.version] || []).join(", "),
    when(v.created_at),
    ...names.map((n) => metric(v.metrics, n)),
    v.training_event_id ? link(`run/${enc(v.training_event_id)}`, v.training_event_id) : "",
    [button({ "data-evaluate": v.version }, "Evaluation", "Evaluation unavailable", () => evaluation(name, v.version, evalBox)),
      m.aliases.production === v.version || v.refused ? "" :
        confirmed({ "data-promote": v.version }, "Promote to production", `Confirm: v${v.version} to production?`,
          "Promote refused", async () => {
            await api(`${path}/production`, {
              method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ version: Number(v.version) }),
            });
            await model(name);
            say(`production → version ${v.version}`);
          })],
  ]);
  const comparison = h("div", { id: "comparison" });
  const compare = h("button", { id: "compare", type: "button" }, "Compare selected versions");
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
    h("h3", {}, "Serving"), table({ id: "aliases" }, ["Alias", "Version", "Action"], aliases),
    liveSplit(name, m),
    h("h3", {}, "Versions, metrics side by side"),
    table({ id: "versions" }, ["Compare", "Version", "Serves", "Created", ...names, "Training job", "Actions"], versions),
    compare, comparison, evalBox, servingBox);
  const shown = m.aliases.production ?? m.versions.filter((v) => !v.refused).map((v) => v.version).pop();
  if (shown !== undefined) await evaluation(name, shown, evalBox).catch((e) => say(e.message, true));
  say(`${m.versions.length} version(s)`);
}
