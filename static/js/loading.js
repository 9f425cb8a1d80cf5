// The loading page: follow the launch's event stream, show progress and the log, then open the server.
//
// A page reload continues the same launch: the last event id is kept in sessionStorage and sent
// as ?lastEventId= (EventSource cannot set headers; after a dropped connection it sends the
// Last-Event-ID header itself).
import { AnsiRenderer } from "./ansi.js";
import { failedIcon, progressIcon, readyIcon, setFavicon } from "./favicon.js";
import { namesAPage, serverUrl } from "./links.js";

const $ = (id) => document.getElementById(id);
const config = JSON.parse($("launch-config").textContent);
const params = new URLSearchParams(window.location.search);
const storageKey = `bindery:lastEventId:${config.provider}/${config.spec}`;
const STEPS = ["waiting", "fetching", "building", "pushing", "launching", "ready"];
// phase -> [step it belongs to, progress percent]
const PHASES = {
  waiting: ["waiting", 5], fetching: ["fetching", 15], building: ["building", 35], pushing: ["pushing", 70],
  built: ["launching", 80], launching: ["launching", 88], ready: ["ready", 100],
};
const LABELS = {
  connecting: "Connecting", waiting: "Waiting", fetching: "Fetching the repository", building: "Building the image",
  pushing: "Storing the image", built: "Image ready", launching: "Starting the server", ready: "Ready",
  failed: "Failed",
};
const POSITION_POLL_MS = 2000;
// How long the page shows why the server has no notebook interface before it opens the bare server.
const NO_INTERFACE_PAUSE_MS = 5000;

const log = $("log");
const renderer = new AnsiRenderer();
let pending = [];
let pendingLines = 0;
let lines = 0;
let flushScheduled = false;
let phase = "connecting";
let launchId = null;
let source = null;
let pollTimer = null;
let etaDeadline = null;
let etaTimer = null;
// The page the launcher found the server serves (a launching event's default_url), and its word
// when the image has no notebook interface at all.
let defaultUrl = "";
let noInterface = null;

function storage() {
  try {
    return window.sessionStorage;
  } catch (e) {
    return null; // storage disabled: a reload starts a new launch
  }
}

// --- the log: rendered as it comes, appended once per animation frame -------------------------
function flushLog() {
  flushScheduled = false;
  if (!pending.length) return;
  const follow = $("follow").checked;
  log.insertAdjacentHTML("beforeend", pending.join(""));
  lines += pendingLines;
  pending = [];
  pendingLines = 0;
  $("log-count").textContent = `(${lines} line${lines === 1 ? "" : "s"})`;
  if (follow) log.scrollTop = log.scrollHeight;
}

function appendLog(text) {
  if (!text) return;
  pending.push(renderer.render(text));
  pendingLines += (text.match(/\n/g) || []).length || 1;
  if (!flushScheduled) {
    flushScheduled = true;
    requestAnimationFrame(flushLog);
    setTimeout(() => { if (flushScheduled) flushLog(); }, 500); // hidden tabs get no frames
  }
}

// --- progress, title, favicon ---------------------------------------------------------------
function repoName() {
  return $("repo-name").textContent;
}

function showPhase(next, percent) {
  phase = next;
  document.body.dataset.phase = next;
  const bar = $("progress");
  const label = LABELS[next] || next;
  $("status").textContent = next === "failed" ? "Failed" : `${label}…`;
  $("status").className = next === "failed" ? "failed" : next === "ready" ? "ready" : "";
  bar.classList.toggle("failed", next === "failed");
  bar.classList.toggle("ready", next === "ready");
  if (percent !== undefined) {
    bar.setAttribute("aria-valuenow", String(percent));
    bar.querySelector(".bar").style.width = `${percent}%`;
  }
  if (next === "failed") {
    document.title = `✗ Failed: ${repoName()} - Bindery`;
    setFavicon(failedIcon());
  } else if (next === "ready") {
    document.title = `✓ Ready: ${repoName()} - Bindery`;
    setFavicon(readyIcon());
  } else {
    document.title = `${label} (${percent}%): ${repoName()} - Bindery`;
    setFavicon(progressIcon(percent / 100));
  }
}

function markSteps(stepName) {
  const at = STEPS.indexOf(stepName);
  for (const item of $("steps").children) {
    const index = STEPS.indexOf(item.dataset.step);
    item.classList.toggle("done", index < at || stepName === "ready");
    item.classList.toggle("current", index === at && stepName !== "ready");
    if (index === at) item.setAttribute("aria-current", "step"); else item.removeAttribute("aria-current");
  }
}

// --- where you stand ------------------------------------------------------------------------
function duration(seconds) {
  if (seconds < 45) return "less than a minute";
  if (seconds < 90) return "about a minute";
  return `about ${Math.round(seconds / 60)} minutes`;
}

function showEta() {
  if (etaDeadline === null) return;
  const left = (etaDeadline - Date.now()) / 1000;
  $("eta").textContent = left > 0 ? duration(left) : "any moment now";
}

async function pollPosition() {
  pollTimer = null;
  if (!launchId || phase !== "waiting") return;
  try {
    const response = await fetch(`/api/launches/${launchId}/position`, { headers: { Accept: "application/json" } });
    if (response.status === 404) return; // not a launch we can describe: stop asking
    if (response.ok) {
      const where = await response.json();
      if (phase !== "waiting") return;
      $("where").hidden = false;
      $("queue-position").textContent = where.queued
        ? (where.position === 1 ? "1 (next to start)" : `${where.position}`)
        : "not queued yet (checking for a built image)";
      if (where.eta_seconds !== null && where.eta_seconds !== undefined) {
        etaDeadline = Date.now() + where.eta_seconds * 1000;
        showEta();
        if (!etaTimer) etaTimer = setInterval(showEta, 1000);
        const basis = where.estimate.build.basis || where.estimate.launch.basis;
        $("eta-basis").textContent = basis === "repository"
          ? "Estimated from recent launches of this repository."
          : "Estimated from recent launches of all repositories (none yet of this one).";
      } else {
        $("eta").textContent = "unknown (no launches recorded yet)";
      }
    }
  } catch (e) {
    // a failed poll is not worth bothering anyone about; try again
  }
  if (phase === "waiting") pollTimer = setTimeout(pollPosition, POSITION_POLL_MS);
}

function leaveWaiting(next) {
  if (pollTimer) clearTimeout(pollTimer);
  pollTimer = null;
  if (etaDeadline === null) {
    $("where").hidden = true; // nothing useful to say while it runs
  } else {
    $("queue-position").textContent = next === "built" ? "no build needed" : "your build has started";
  }
}

// A launch waiting its turn to start a server: its launching events carry `ahead`, the starts
// before it; the first launching event without it (its server is starting) ends the wait.
function showStartLine(event) {
  const waiting = typeof event.ahead === "number";
  $("start-line").hidden = !waiting;
  if (waiting) $("start-ahead").textContent = event.ahead === 0 ? "none: yours is next" : `${event.ahead}`;
}

// --- events ---------------------------------------------------------------------------------
function finish(keepResume = false) {
  if (source) source.close();
  if (!keepResume) storage()?.removeItem(storageKey);
  leaveWaiting();
  if (etaTimer) clearInterval(etaTimer);
  $("where").hidden = true;
  $("start-line").hidden = true;
}

function onReady(event) {
  finish();
  showPhase("ready", 100);
  markSteps("ready");
  if (!event.url) {
    $("status").textContent = `Ready: image ${event.imageName || ""} is built.`;
    return;
  }
  const target = serverUrl(event.url, event.token, params, defaultUrl);
  if (noInterface && !namesAPage(params)) {
    // Say why the page will be bare before going there; the link skips the wait.
    $("status").textContent = "Ready, but there is no notebook interface to open.";
    $("notice-text").textContent = noInterface;
    $("open-now").href = target;
    $("notice").hidden = false;
    setTimeout(() => window.location.assign(target), NO_INTERFACE_PAUSE_MS);
    return;
  }
  $("status").textContent = "Ready! Opening your server…";
  window.location.assign(target);
}

function onFailed(event, keepResume = false) {
  finish(keepResume);
  flushLog();
  showPhase("failed");
  // The message may quote the end of the build log, colours and all.
  const [summary, ...detail] = (event.message || "The launch failed.").trimEnd().split("\n");
  const ansi = new AnsiRenderer();
  $("error-summary").innerHTML = ansi.render(summary);
  $("error-detail").innerHTML = ansi.render(detail.join("\n"));
  $("error-detail").hidden = detail.length === 0;
  $("error-detail").scrollTop = $("error-detail").scrollHeight; // the last lines say why
  $("error").hidden = false;
  $("log-panel").open = true;
  log.scrollTop = log.scrollHeight;
  $("error").focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

function onEvent(event) {
  if (event.message && event.phase !== "ready") appendLog(event.message);
  if (event.phase === "launching") showStartLine(event);
  if (event.phase === "launching" && typeof event.default_url === "string") {
    defaultUrl = event.default_url;
    noInterface = event.no_interface ? event.message : null;
  }
  if (event.phase === "ready") return onReady(event);
  if (event.phase === "failed") return onFailed(event);
  const known = PHASES[event.phase];
  if (!known) return undefined;
  if (event.phase !== "waiting" && phase === "waiting") leaveWaiting(event.phase);
  // Never move the bar backwards (a waiting event can follow fetching when a build is queued).
  const now = Number($("progress").getAttribute("aria-valuenow"));
  const nextPhase = known[1] >= now ? event.phase : phase;
  showPhase(nextPhase, Math.max(now, known[1]));
  markSteps(PHASES[nextPhase] ? PHASES[nextPhase][0] : known[0]);
  if (phase === "waiting" && !pollTimer) pollTimer = setTimeout(pollPosition, 300);
  return undefined;
}

function start() {
  const query = new URLSearchParams();
  if (params.get("build_only")) query.set("build_only", params.get("build_only"));
  const resume = storage()?.getItem(storageKey);
  if (resume) query.set("lastEventId", resume);
  // This page's build token: launches from Bindery's own page skip the per-address rate limit.
  if (config.buildToken) query.set("build_token", config.buildToken);
  const qs = query.toString();
  source = new EventSource(`/build/${config.provider}/${config.spec}${qs ? `?${qs}` : ""}`);
  source.onmessage = (message) => {
    if (message.lastEventId) {
      storage()?.setItem(storageKey, message.lastEventId);
      launchId = message.lastEventId.split("_")[0];
      document.body.dataset.launchId = launchId;
    }
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    onEvent(event);
  };
  source.onerror = () => {
    if (phase === "ready" || phase === "failed") return;
    if (source.readyState === EventSource.CLOSED) {
      onFailed({ message: "Lost the connection to Bindery. Try again to continue where it stopped." }, true);
    } else {
      $("status").textContent = "Connection lost; reconnecting…";
    }
  };
}

// A retry after a failure is a new launch (the resume id is gone); after a lost connection the
// id was kept, so the reload continues the same launch.
$("retry").addEventListener("click", () => window.location.reload());

showPhase("connecting", 0);
$("status").textContent = "Connecting…";
start();
