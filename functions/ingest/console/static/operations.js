// The operational pages: jobs (live), datasets, pipelines, federations, keys (admin), dead letters.
import { api, button, confirmed, h, link, num, progress, refresh, say, show, table, when } from "./dom.js";

const enc = encodeURIComponent;
const LIVE = new Set(["queued", "running"]);

function metricsText(metrics) {
  return Object.entries(metrics || {}).map(([k, v]) => `${k} ${num(v)}`).join(", ");
}

export async function jobs() {
  const list = (await api("/v1/jobs?limit=200")).reverse(); // newest first
  const rows = list.map((j) => [link(`run/${enc(j.job_id)}`, j.job_id), j.model_name,
    h("span", { class: `state state-${j.state}` }, j.state), progress(j.epoch, j.epochs, j.job_id),
    num(j.loss), metricsText(j.metrics), j.version ?? "",
    j.reason ? h("p", { class: "reason" }, j.reason) : "", when(j.updated),
    LIVE.has(j.state) ? confirmed({ "data-cancel": j.job_id }, "Cancel", `Confirm: cancel ${j.job_id}?`, "Cancel refused", async () => {
      await api(`/v1/jobs/${enc(j.job_id)}/cancel`, { method: "POST" });
      say(`Job ${j.job_id} asked to stop`);
    }) : ""]);
  show(h("h2", {}, "Jobs"), table({ id: "jobs" },
    ["Job", "Model", "State", "Progress", "Loss", "Metrics", "Version", "Reason", "Updated", "Action"], rows, "Training jobs, newest first"));
  const live = list.filter((j) => LIVE.has(j.state)).length;
  say(`${list.length} job(s), ${live} queued or running`);
  if (live) refresh(() => jobs().catch((e) => say(e.message, true)), 2000); // live progress
}

function size(bytes) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let v = Number(bytes) || 0, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

// A table upload's profile: every column with its kind and missing count, the label with its class
// counts (or the target's statistics), and the columns a model would drop, each with why.
function profileSection(d) {
  const p = d.profile;
  const title = `Profile of ${d.name}`;
  const columns = table({ class: "profile-columns", "aria-label": `columns of ${d.name}` },
    ["Column", "Kind", "Type", "Missing", "Distinct", "Used", "Why not"], p.columns.map((c) => [
      h("th", { scope: "row" }, c.name), c.kind, h("code", {}, c.arrow_type), String(c.missing),
      `${c.distinct}${c.distinct_more ? "+" : ""}`, c.used ? "yes" : "no", c.reason || ""]), `Columns of ${d.name}`);
  const l = p.label;
  const label = !l ? h("p", { class: "hint" }, "No label column.") : h("div", { class: "profile-label" },
    h("p", {}, `Label ${l.column} (${l.task}), ${l.missing} missing`),
    Object.keys(l.classes || {}).length ? table({ class: "profile-classes", "aria-label": `classes of ${d.name}` }, ["Class", "Rows"],
      Object.entries(l.classes).map(([k, n]) => [h("th", { scope: "row" }, k), String(n)]), `Rows per class of ${l.column}`) : null,
    l.target ? table({ class: "profile-target", "aria-label": `target of ${d.name}` }, ["Mean", "Std", "Min", "Max"],
      [[num(l.target.mean), num(l.target.std), num(l.target.min), num(l.target.max)]], `Target ${l.column}`) : null);
  const dropped = Object.entries(p.dropped || {});
  return h("section", { class: "profile", "data-dataset": d.name, "aria-label": title }, h("h3", {}, title),
    h("p", {}, `${p.format}, ${p.rows} rows, ${p.columns.length} columns; a model uses ${p.used.length}: ${p.used.join(", ")}`),
    p.problem ? h("p", { class: "error" }, p.problem) : null, columns, label,
    dropped.length ? table({ class: "profile-dropped", "aria-label": `dropped columns of ${d.name}` }, ["Dropped column", "Why"],
      dropped.map(([c, why]) => [h("th", { scope: "row" }, c), why]), `Columns a model of ${d.name} drops`)
      : h("p", { class: "hint" }, "No column is dropped."));
}

export async function datasets() {
  const list = await api("/v1/datasets");
  const profiled = list.filter((d) => d.rows !== null && d.rows !== undefined);
  const details = await Promise.all(profiled.map((d) =>
    api(`/v1/datasets/${enc(d.name)}?sha256=${enc(d.sha256)}`).catch((e) => ({ ...d, error: e.message }))));
  show(h("h2", {}, "Datasets"), table({ id: "datasets" }, ["Name", "Format", "Size", "Rows", "Columns", "Label", "Task", "sha256"],
    list.map((d) => [d.name, d.format, size(d.size), d.rows ?? "", d.columns ?? "", d.label ?? "", d.task ?? "", h("code", {}, d.sha256)]),
    "Stored uploads"),
  h("div", { id: "profiles" }, details.map((d) => (d.profile ? profileSection(d)
    : h("p", { class: "error" }, `No profile for ${d.name}: ${d.error || "none stored"}`)))));
  say(`${list.length} dataset upload(s), ${profiled.length} profiled`);
}

export async function pipelines() {
  const list = await api("/v1/pipelines");
  show(h("h2", {}, "Pipelines"), table({ id: "pipelines" },
    ["Name", "On", "Datasets", "Model", "Recipe", "Gate", "Last fired"], list.map((p) => [
      p.name, p.on, p.dataset || `${p.dataset_prefix}*`, link(`model/${enc(p.model_name)}`, p.model_name),
      `${p.recipe.architecture}, ${p.recipe.epochs} epochs`,
      p.gate ? `${p.gate.alias} if ${p.gate.metric} ≥ ${p.gate.minimum}` : "",
      p.last_fired ? [link(`run/${enc(p.last_fired.job_id)}`, p.last_fired.job_id), ` ${p.last_fired.state} ${when(p.last_fired.at)}`] : "never",
    ]), "Pipeline rules"));
  say(`${list.length} pipeline(s)`);
}

export async function federations() {
  const list = await api("/v1/federations");
  show(h("h2", {}, "Federations"), table({ id: "federations" },
    ["Federation", "Rounds closed", "Latest version", "Latest metrics", "Participants"], list.map((f) => [
      link(`federation/${enc(f.federation_id)}`, f.federation_id), f.rounds_closed, f.last_version ?? "",
      metricsText(f.last_metrics), f.participants.join(", ")]), "Federations"));
  say(`${list.length} federation(s)`);
}

export async function federation(id) {
  const rounds = await api(`/v1/federations/${enc(id)}/rounds`);
  show(h("h2", {}, `Federation ${id}`), table({ id: "rounds" }, ["Round", "Version", "Metrics", "Examples", "Participants"],
    rounds.map((r) => [r.round, r.version, metricsText(r.metrics), r.n_examples, r.participants.join(", ")]), "Closed rounds"));
  say(`${rounds.length} round(s) closed`);
}

export async function keys() {
  let list;
  try { list = await api("/v1/keys"); } catch (e) {
    if (e.message === "401") throw e;
    show(h("h2", {}, "API keys"), h("p", { class: "error" }, `Keys need an admin key: ${e.message}`));
    return;
  }
  show(h("h2", {}, "API keys"), table({ id: "keys" },
    ["Key", "Name", "Tenant", "Scopes", "Created", "Expires", "Revoked", "Action"], list.map((k) => [
      h("code", {}, k.masked), k.name, k.tenant, k.scopes.join(", "), when(k.created_at), when(k.expires_at), when(k.revoked_at),
      k.revoked_at ? "" : confirmed({ "data-revoke": k.key_id }, "Revoke", `Confirm: revoke ${k.masked}?`, "Revoke refused", async () => {
        await api(`/v1/keys/${enc(k.key_id)}`, { method: "DELETE" });
        await keys();
        say(`Key ${k.masked} revoked`);
      }),
    ]), "Every key, masked"));
  say(`${list.length} key(s)`);
}

export async function dlq() {
  const list = await api("/v1/dlq");
  const rows = list.map((d) => [d.job_id, d.model_name, h("p", { class: "reason" }, d.reason), d.deliveries,
    button({ "data-retry": d.job_id, "aria-label": `retry ${d.job_id}` }, "Retry", "Retry refused", async () => {
      await api(`/v1/dlq/${enc(d.job_id)}/retry`, { method: "POST" });
      say(`Job ${d.job_id} published again`);
    })]);
  show(h("h2", {}, "Dead-lettered jobs"), table({ id: "dlq" }, ["Job", "Model", "Reason", "Deliveries", "Action"], rows));
  say(`${list.length} dead letter(s)`);
}

