// The console's building blocks: elements from attributes and text (never from HTML strings: a job id,
// metric name or error message published by anyone stays text, issue 25), tables, the API call, status.
export const KEY = "fermion-key";
export const view = document.getElementById("view");
const status = document.getElementById("status");
const onLogout = [];

// An element with attributes (setAttribute: no markup is parsed) and children (nodes, or strings as text).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (/^on/i.test(name) || name === "style") throw new Error(`not an attribute the page sets: ${name}`);
    if (value !== null && value !== undefined && value !== false) el.setAttribute(name, String(value));
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined).map((c) => (c instanceof Node ? c : String(c))));
  return el;
}

// A link within the console: always a fragment, so no value can make it a javascript: or foreign URL.
export function link(hash, text) {
  return h("a", { href: `#${hash}` }, text);
}

// A table in a scrolling box (wide tables scroll inside it; the page never overflows a narrow screen).
export function table(attrs, heads, rows, caption = null) {
  const cell = (c) => (c instanceof HTMLTableCellElement ? c : h("td", {}, c));
  const head = (x) => (x instanceof HTMLTableCellElement ? x : h("th", { scope: "col" }, x));
  const t = h("table", attrs, caption === null ? null : h("caption", {}, caption),
    h("thead", {}, h("tr", {}, heads.map(head))),
    h("tbody", {}, rows.map((cells) => (cells instanceof HTMLTableRowElement ? cells : h("tr", {}, cells.map(cell))))));
  return h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": caption || attrs["aria-label"] || attrs.id || "table" }, t);
}

export function show(...nodes) {
  view.replaceChildren(...nodes.filter((n) => n !== null));
}

export function say(text, error = false) {
  status.textContent = text;
  status.className = error ? "error" : "";
}

// A button whose click runs `action`; a refusal is said as `refused: <why>`.
export function button(attrs, text, refused, action) {
  const b = h("button", { type: "button", ...attrs }, text);
  b.addEventListener("click", async () => {
    try { await action(); } catch (e) { say(`${refused}: ${e.message}`, true); }
  });
  return b;
}

// A button that asks before it acts: the first click turns it into "Confirm …", the second acts.
export function confirmed(attrs, text, question, refused, action) {
  const b = h("button", { type: "button", ...attrs }, text);
  let armed = false;
  b.addEventListener("click", async () => {
    if (!armed) { armed = true; b.textContent = question; b.classList.add("armed"); return; }
    armed = false; b.textContent = text; b.classList.remove("armed");
    try { await action(); } catch (e) { say(`${refused}: ${e.message}`, true); }
  });
  return b;
}

export function whenLoggedOut(fn) { onLogout.push(fn); }

export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, ...(options.headers || {}) };
  const r = await fetch(path, { ...options, headers });
  if (r.status === 401) { sessionStorage.removeItem(KEY); onLogout.forEach((fn) => fn("That key was refused.")); throw new Error("401"); }
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new Error((body && (body.error || body.detail && JSON.stringify(body.detail))) || `${r.status}`);
  return body;
}

// A timestamp to the second, in UTC, without microseconds: "2026-12-07 01:39:19Z".
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : `${d.toISOString().slice(0, 19).replace("T", " ")}Z`;
}

// A number to four significant places; anything else as written.
export function num(v) {
  return typeof v === "number" && Number.isFinite(v) ? String(Number(v.toPrecision(4))) : (v ?? "");
}

// A metric's value (own keys only: a metric named "__proto__" is just a name).
export function metric(metrics, name) {
  return metrics && Object.hasOwn(metrics, name) ? Number(metrics[name]).toFixed(4) : "";
}

export function metricNames(rows) {
  return [...new Set(rows.flatMap((r) => Object.keys(r.metrics || {})))].sort();
}

// A parameter's value as one short line of text.
export function param(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

let timer = null;
// Run `fn` again in `ms` (live pages: a running job's progress); a new page cancels it.
export function refresh(fn, ms) {
  clearTimeout(timer);
  timer = setTimeout(fn, ms);
}

export function stopRefresh() {
  clearTimeout(timer);
}

// A progress bar with its text: "3/10".
export function progress(done, total, what) {
  const max = Number(total) > 0 ? Number(total) : 1;
  return [h("progress", { max, value: Math.min(Number(done) || 0, max), "aria-label": `epochs of ${what}` }),
    ` ${done ?? 0}/${total ?? "?"}`];
}
