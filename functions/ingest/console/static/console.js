// The Fermion console: plain JavaScript modules over the same HTTP API as the CLI, with the key in
// sessionStorage. Every value the API returns reaches the page through textContent or setAttribute,
// never through an HTML string (issue 25), and the page runs under a CSP with no inline script (headers.py).
import { KEY, say, stopRefresh, view, whenLoggedOut } from "./dom.js";
import { model, models } from "./models.js";
import { datasets, dlq, federation, federations, jobs, keys, pipelines } from "./operations.js";
import { rollout } from "./rollouts.js";
import { compare, run, runs } from "./runs.js";

const login = document.getElementById("login");
const PAGES = { models, model, runs, run, compare: (arg) => compare(arg.split("&").map(decodeURIComponent)),
  rollout, jobs, datasets, pipelines, federations, federation, keys, dlq };

function showLogin(message) {
  login.hidden = false;
  view.replaceChildren();
  say(message || "Enter an API key to start.");
}
whenLoggedOut(showLogin);

login.addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("key").value.trim());
  login.hidden = true;
  route();
});

// The current page in the navigation (aria-current), so a reader knows where they are.
function mark(page) {
  const section = { model: "models", rollout: "models", run: "runs", compare: "runs", federation: "federations" }[page] || page;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#${section}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  stopRefresh();
  if (!sessionStorage.getItem(KEY)) { showLogin(); return; }
  try {
    const hash = location.hash.slice(1) || "models";
    const [name, raw] = hash.split(/\/(.*)/s);
    const page = Object.hasOwn(PAGES, name) ? name : "models";
    mark(page);
    // compare keeps its ids encoded (they are split on "&" first); the others take one decoded argument
    const arg = raw === undefined ? undefined : page === "compare" ? raw : decodeURIComponent(raw);
    await PAGES[page](arg);
  } catch (e) {
    if (e.message !== "401") say(e.message, true);
  }
}

window.addEventListener("hashchange", route);
route();
