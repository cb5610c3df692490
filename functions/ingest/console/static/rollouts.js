// Rollouts: the live split of every alias (model page), and a rollout's page: its steps, the bake time
// left, the controller's comparison of canary and incumbent with its decision and reason, polled live,
// and step/abort with a confirmation. Serving graphs per version come from the serving route.
import { servingCharts } from "./charts.js";
import { api, confirmed, h, link, num, refresh, say, show, table, when } from "./dom.js";

const enc = encodeURIComponent;
const POLL_MS = 1500; // a weight change shows within two polls
const CHARTS_EVERY = 6; // polls between redrawn serving graphs (about 10 s)
const ROLLOUT_MINUTES = 15; // a rollout's graphs: its recent steps, at a readable scale

export function splitText(split) {
  return Object.entries(split || {}).sort(([a], [b]) => Number(a) - Number(b)).map(([v, w]) => `v${v} ${w}%`).join(" · ");
}

// The model page's box: each alias, the version(s) serving it and their shares; a link to its rollout.
export function liveSplit(name, m) {
  const splits = m.splits || Object.fromEntries(Object.entries(m.aliases).map(([a, v]) => [a, { [v]: 100 }]));
  const rows = Object.entries(splits).map(([alias, split]) => {
    const canaried = Object.keys(split).length > 1;
    return h("tr", { "data-alias": alias, class: canaried ? "canaried" : "" }, h("th", { scope: "row" }, alias),
      h("td", {}, splitText(split)), h("td", {}, canaried ? "rollout in progress" : ""),
      h("td", {}, alias === "latest" ? "" : link(`rollout/${enc(name)}/${enc(alias)}`, `Rollout of ${alias}`)));
  });
  return h("section", { id: "live-split", "data-model": name, "aria-labelledby": "live-split-h" },
    h("h3", { id: "live-split-h" }, "Live split"),
    table({ id: "splits" }, ["Alias", "Split (version share)", "State", "Rollout"], rows, "Which versions serve each alias, now"));
}

// The model page's serving graphs, per version, over the last hour.
export async function servingSection(name, minutes = 60) {
  const box = h("section", { id: "serving", "aria-labelledby": "serving-h" }, h("h3", { id: "serving-h" }, `Serving per version (last ${minutes} minutes)`));
  await fillServing(box, name, minutes);
  return box;
}

async function fillServing(box, name, minutes) {
  const serving = await api(`/v1/models/${enc(name)}/serving?window=${minutes * 60}`);
  const heading = box.firstChild;
  const charts = h("div", { class: "charts" }, ...servingCharts(serving));
  box.replaceChildren(heading, serving.versions.length ? charts
    : h("p", { class: "hint" }, "No traffic measured in that time (the monitor keeps a window per version as requests come)."));
}

function trafficRows(a) {
  const c = a.canary_traffic, i = a.incumbent_traffic;
  const row = (label, f) => [h("th", { scope: "row" }, label), f(c), f(i)];
  return [
    row("Requests (samples)", (t) => String(t.requests)),
    row("Errors", (t) => String(t.errors)),
    row("Error ratio", (t) => num(t.error_ratio)),
    row("p99 latency (ms)", (t) => num(t.p99_ms)),
    row("Labelled (accuracy samples)", (t) => String(t.labelled)),
    row("Online accuracy", (t) => (t.accuracy === null || t.accuracy === undefined ? "no labels yet" : num(t.accuracy))),
  ];
}

function analysisBox(a) {
  if (!a) return h("p", { class: "hint", id: "decision" }, "The rollout controller has not judged this alias yet.");
  const cls = a.decision === "rollback" ? "decision rollback" : "decision";
  return h("div", {},
    h("p", { id: "decision", class: cls }, `Decision: ${a.decision}`, a.action ? ` (${a.action.replace("_", " ")})` : "",
      ` at step ${a.step + 1}, canary at ${a.weight}% · judged ${when(a.at)}`, a.automatic ? "" : " · advice only (manual rollout)"),
    h("p", { id: "decision-reason", class: a.decision === "rollback" ? "reason" : "" }, a.reason),
    table({ id: "analysis" }, ["Measure", `Canary v${a.canary}`, `Incumbent v${a.incumbent}`], trafficRows(a),
      "The controller's comparison since the step began"));
}

function progressBox(p, state) {
  if (!p) {
    const last = (state.record.changes || []).at(-1);
    return h("div", {}, h("p", { id: "rollout-state" }, "No rollout runs on this alias now."),
      last ? h("p", { id: "last-change" }, `Last move ${when(last.at)}: `, h("span", { class: "reason" }, last.reason)) : null);
  }
  const steps = table({ id: "rollout-steps" }, ["Step", "Canary weight", "State"], p.steps.map((s) =>
    h("tr", { class: `step-${s.state}` }, h("td", {}, String(s.index + 1)), h("td", {}, `${s.weight}%`), h("td", {}, s.state))),
  "Steps of the rollout");
  const bake = p.bake_left_s > 0 ? `${Math.ceil(p.bake_left_s)} s of ${num(p.bake_s)} s left to bake` : "baked";
  return h("div", {},
    h("p", { id: "rollout-state" }, `Canary v${p.canary} against incumbent v${p.incumbent}: step ${p.step + 1} of ${p.steps.length}, `,
      h("strong", { id: "rollout-weight" }, `${p.weight}%`), " of the traffic", p.automatic ? " · automatic" : " · stepped by hand"),
    h("p", { id: "bake-left" }, `Bake: ${bake} (step started ${when(p.step_started_at)})`), steps);
}

function changesTable(record) {
  const rows = (record.changes || []).slice().reverse().map((c) => [when(c.at), splitText(c.weights), c.reason]);
  return table({ id: "changes" }, ["When", "Split", "Reason"], rows, "Recent moves of this alias, newest first");
}

// A rollout's page (#rollout/<model>/<alias>), polled every POLL_MS while it is open.
export async function rollout(arg) {
  const [name, alias] = arg.split(/\/(.*)/s);
  const path = `/v1/models/${enc(name)}/aliases/${enc(alias)}/canary`;
  const live = h("div", { id: "rollout-live", "aria-live": "polite" });
  const serving = h("section", { id: "serving", "aria-labelledby": "serving-h" }, h("h3", { id: "serving-h" }, `Serving per version (last ${ROLLOUT_MINUTES} minutes)`));
  const here = location.hash;
  let polls = 0;
  const move = (what, label, question) => confirmed({ [`data-${what}`]: alias }, label, question, `${label} refused`, async () => {
    const body = what === "step" ? { headers: { "Content-Type": "application/json" }, body: "{}" } : {};
    const r = await api(`${path}/${what}`, { method: "POST", ...body });
    say(`${alias}: ${splitText(r.split)}`);
    await poll();
  });
  async function poll() {
    const state = await api(path);
    live.replaceChildren(
      h("p", {}, "Live split: ", h("strong", { id: "rollout-split" }, splitText(state.split))),
      progressBox(state.progress, state),
      h("h3", {}, "Controller's analysis"), analysisBox(state.analysis),
      h("h3", {}, "Moves"), changesTable(state.record));
    actions.hidden = !state.progress;
    if (polls % CHARTS_EVERY === 0) await fillServing(serving, name, ROLLOUT_MINUTES);
    polls += 1;
    say(state.progress ? `Rollout of ${name}@${alias}: canary at ${state.progress.weight}%` : `${name}@${alias}: no rollout running`);
  }
  const actions = h("p", { id: "rollout-actions" }, move("step", "Step the canary", "Confirm: next step?"),
    move("abort", "Abort the rollout", "Confirm: all traffic to the incumbent?"));
  show(h("h2", {}, "Rollout of ", link(`model/${enc(name)}`, name), `@${alias}`), live, actions, serving);
  await poll();
  const again = () => {
    if (location.hash !== here) return; // the reader moved on; route() cleared the timer too
    poll().catch((e) => say(e.message, true)).finally(() => location.hash === here && refresh(again, POLL_MS));
  };
  refresh(again, POLL_MS);
}
