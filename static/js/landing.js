// The landing page: pick a provider (from /api/repoproviders), paste a URL, get a link and badges.
import { FALLBACK_PROVIDERS, badges, buildSpec, detect, launchPath, shareUrl } from "./links.js";
import { pushSettings } from "./push_hooks.js";

const $ = (id) => document.getElementById(id);
const form = $("launch-form");
const baseUrl = form.dataset.baseUrl;
const fields = {
  provider: $("provider"), repo: $("repo"), ref: $("ref"), pathType: $("path-type"), path: $("path"),
};
let providers = FALLBACK_PROVIDERS;

function current() {
  return providers.find((p) => p.id === fields.provider.value) || providers[0];
}

let shownDefault = "HEAD";

function describeProvider() {
  const provider = current();
  $("repo-label").textContent = provider.repo_label || "Repository";
  fields.repo.placeholder = provider.repo_placeholder || "";
  const ref = provider.ref || { enabled: true, default: "HEAD" };
  $("ref-label").textContent = ref.label || "Git ref (branch, tag, or commit)";
  fields.ref.disabled = ref.enabled === false;
  fields.ref.placeholder = ref.default || "HEAD";
  // An untouched ref follows the provider's default.
  if (!fields.ref.value.trim() || fields.ref.value === shownDefault) fields.ref.value = ref.default || "";
  shownDefault = ref.default || "";
  $("ref-field").hidden = ref.enabled === false;
}

function describePath() {
  const url = fields.pathType.value === "url";
  $("path-label").textContent = url ? "URL to open (optional)" : "File to open (optional)";
  fields.path.placeholder = url ? "for example: /lab or /voila/render/app.ipynb" : "for example: index.ipynb";
}

function update() {
  const provider = current();
  const spec = buildSpec(provider, fields.repo.value, fields.ref.value);
  const ready = Boolean(spec);
  const link = ready ? shareUrl(baseUrl, provider.id, spec, fields.pathType.value, fields.path.value) : "";
  const snippets = ready ? badges(baseUrl, link) : { markdown: "", rst: "" };
  $("share-url").textContent = link || "Fill in the repository to get a link.";
  $("badge-markdown").textContent = snippets.markdown || "—";
  $("badge-rst").textContent = snippets.rst || "—";
  for (const id of ["copy-url", "copy-markdown", "copy-rst"]) $(id).disabled = !ready;
  form.dataset.spec = spec;
  showPush(provider.id, spec);
}

function showPush(providerId, spec) {
  const box = $("push-box");
  if (!box) return; // build on push is off on this Bindery
  const enabled = { hooks: Boolean(box.dataset.hooks), api: Boolean(box.dataset.api), tags: Boolean(box.dataset.tags) };
  const found = pushSettings(baseUrl, providerId, spec, enabled);
  $("push-label").textContent = found ? found.label : "Webhook URL";
  $("push-url").textContent = found ? found.url : spec ? "Not offered for this kind of repository." : "—";
  $("copy-push").disabled = !found;
  $("push-steps").replaceChildren(...(found ? found.steps : []).map((step) => {
    const item = document.createElement("li");
    item.textContent = step;
    return item;
  }));
}

function applyDetected() {
  const found = detect(fields.repo.value, providers);
  if (!found) return false;
  fields.provider.value = found.provider;
  describeProvider();
  fields.repo.value = found.repo;
  if (!fields.ref.disabled) fields.ref.value = found.ref || shownDefault;
  if (found.file) {
    fields.pathType.value = "file";
    fields.path.value = found.file;
    describePath();
  }
  const provider = current();
  $("form-status").textContent = `Recognised a ${provider.display_name} URL: filled in the fields.`;
  return true;
}

async function copy(text, what) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    // Clipboard API refused (permissions, insecure origin): copy from a selected textarea.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  $("copy-status").textContent = `Copied the ${what} to the clipboard.`;
}

async function loadProviders() {
  try {
    const response = await fetch("/api/repoproviders", { headers: { Accept: "application/json" } });
    if (response.ok) {
      const listed = await response.json();
      if (Array.isArray(listed) && listed.length) providers = listed;
    }
  } catch (e) {
    // keep the built-in list: the page still works without the endpoint
  }
  const chosen = fields.provider.value;
  fields.provider.replaceChildren(...providers.map((p) => new Option(p.display_name, p.id)));
  if (providers.some((p) => p.id === chosen)) fields.provider.value = chosen;
  describeProvider();
  update();
  form.dataset.providersLoaded = "true";
}

fields.provider.addEventListener("change", () => { describeProvider(); update(); });
fields.repo.addEventListener("input", () => { applyDetected(); update(); });
fields.ref.addEventListener("input", update);
fields.path.addEventListener("input", update);
fields.pathType.addEventListener("change", () => { describePath(); update(); });
$("copy-url").addEventListener("click", () => copy($("share-url").textContent, "link"));
$("copy-markdown").addEventListener("click", () => copy($("badge-markdown").textContent, "Markdown badge"));
$("copy-rst").addEventListener("click", () => copy($("badge-rst").textContent, "reStructuredText badge"));
if ($("copy-push")) $("copy-push").addEventListener("click", () => copy($("push-url").textContent, "build-on-push URL"));
form.addEventListener("submit", (event) => {
  event.preventDefault();
  applyDetected();
  update();
  if (!form.dataset.spec) {
    $("form-status").textContent = "Please fill in the repository first.";
    fields.repo.focus();
    return;
  }
  const provider = current();
  window.location.assign(`/${launchPath(provider.id, form.dataset.spec, fields.pathType.value, fields.path.value)}`);
});

describePath();
loadProviders();
