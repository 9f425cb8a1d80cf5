// Pure functions behind the landing and loading pages: repository URLs -> provider fields,
// fields -> spec, share link and badges, and the ready event -> the server URL to open.
// No DOM here, so the tests can call each one directly.

// Used when /api/repoproviders cannot be read; the same shape as its answer.
export const FALLBACK_PROVIDERS = [
  {
    id: "gh", display_name: "GitHub", spec_pattern: "<user>/<repo>/<ref>",
    url_regex: "^https?://(www\\.)?github\\.com/[^/]+/[^/]+",
    repo_label: "GitHub repository name or URL", repo_placeholder: "user/repo or https://github.com/user/repo",
    ref: { enabled: true, default: "HEAD", label: "Git ref (branch, tag, or commit)" },
    url_to_spec: { repo: "path" },
  },
  {
    id: "gl", display_name: "GitLab.com", spec_pattern: "<url-escaped namespace/project>/<ref>",
    url_regex: "^https?://(www\\.)?gitlab\\.com/",
    repo_label: "GitLab repository name or URL", repo_placeholder: "group/project or https://gitlab.com/group/project",
    ref: { enabled: true, default: "HEAD", label: "Git ref (branch, tag, or commit)" },
    url_to_spec: { repo: "escaped-url" },
  },
  {
    id: "git", display_name: "Git repository", spec_pattern: "<url-escaped clone URL>/<ref>",
    url_regex: "^(https?|git)://",
    repo_label: "Arbitrary git repository URL", repo_placeholder: "https://example.org/repo.git",
    ref: { enabled: true, default: "HEAD", label: "Git ref (branch, tag, or commit)" },
    url_to_spec: { repo: "escaped-url" },
  },
];

function kindOf(provider) {
  return (provider.url_to_spec && provider.url_to_spec.repo) || "path";
}

function refEnabled(provider) {
  return !provider.ref || provider.ref.enabled !== false;
}

// Whether the repository field holds a whole URL (git clone URL, CKAN dataset URL).
function repoIsUrl(provider) {
  return kindOf(provider) === "escaped-url" && /\bURL\b/.test(provider.spec_pattern || "");
}

// How many path segments name the repository (null: any number, as GitLab's nested groups).
function repoSegments(provider) {
  if (kindOf(provider) === "escaped-url") return null;
  const parts = (provider.spec_pattern || "").split("/").filter(Boolean);
  const n = parts.length - (refEnabled(provider) ? 1 : 0);
  return n > 1 ? n : null;
}

function compile(pattern) {
  try {
    return new RegExp(pattern, "i");
  } catch (e) {
    return null;
  }
}

// Providers in the order a pasted URL is tried: as listed, but catch-alls (a regex that
// claims any URL, as the generic git provider's) last.
const ANY_URL = "https://example.invalid/some/where";
function detectionOrder(providers) {
  const catchAll = (p) => Boolean(compile(p.url_regex || "")?.test(ANY_URL));
  return [...providers].sort((a, b) => catchAll(a) - catchAll(b));
}

function cleanPath(pathname) {
  let path = pathname;
  try {
    path = decodeURIComponent(pathname);
  } catch (e) {
    // keep it escaped
  }
  return path.replace(/^\/+|\/+$/g, "");
}

// From a repository host's web URL: the repository, and a ref and file when the URL names them
// (GitHub's /tree/<ref>, /blob/<ref>/<file>; GitLab's /-/tree/<ref>, /-/blob/<ref>/<file>;
// a gist's /<40-hex revision>).
function parsePathUrl(text, provider) {
  let url;
  try {
    url = new URL(text);
  } catch (e) {
    return null;
  }
  let path = cleanPath(url.pathname);
  let rest = [];
  const dash = path.indexOf("/-/");
  if (dash >= 0) {
    rest = path.slice(dash + 3).split("/");
    path = path.slice(0, dash);
  }
  let parts = path.split("/").filter(Boolean);
  const limit = repoSegments(provider);
  if (!rest.length) {
    const at = parts.findIndex((p, i) => i >= 1 && (p === "tree" || p === "blob"));
    if (at >= 0 && (limit === null || at >= limit)) {
      rest = parts.slice(at);
      parts = parts.slice(0, at);
    }
  }
  if (limit !== null) {
    if (!rest.length && parts.length === limit + 1 && /^[0-9a-f]{40}$/i.test(parts[limit])) {
      rest = ["tree", parts[limit]];
    }
    parts = parts.slice(0, limit);
  }
  if (!parts.length) return null;
  parts[parts.length - 1] = parts[parts.length - 1].replace(/\.git$/, "");
  const found = { provider: provider.id, repo: parts.join("/"), ref: null, file: null };
  if ((rest[0] === "tree" || rest[0] === "blob") && rest[1]) {
    found.ref = rest[1];
    if (rest[0] === "blob" && rest.length > 2) found.file = rest.slice(2).join("/");
  }
  return found;
}

// A single-value spec (resource id, SWHID, DOI) inside a URL: the longest part the provider's
// regex captured that is not itself a URL.
function capturedValue(match, value) {
  const groups = match.slice(1).filter((g) => g && !g.includes("://"));
  groups.sort((a, b) => b.length - a.length);
  return (groups[0] || value).replace(/\/+$/, "");
}

// A pasted URL (or DOI) -> {provider, repo, ref, file}, or null when no provider claims it.
export function detect(text, providers) {
  const value = String(text || "").trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\/|^doi:|^10\.\d{4,}\//i.test(value)) return null;
  for (const provider of detectionOrder(providers)) {
    const re = compile(provider.url_regex || "");
    const match = re ? value.match(re) : null;
    if (!match) continue;
    const found = { provider: provider.id, repo: value, ref: null, file: null };
    if (kindOf(provider) === "doi") {
      found.repo = value.replace(/^https?:\/\/(dx\.)?doi\.org\//i, "").replace(/^doi:/i, "");
    } else if (repoIsUrl(provider)) {
      found.repo = value;
    } else if (repoSegments(provider) !== null || kindOf(provider) === "escaped-url") {
      const parsed = parsePathUrl(value, provider);
      if (!parsed) continue;
      Object.assign(found, parsed);
    } else {
      found.repo = capturedValue(match, value);
    }
    return found;
  }
  return null;
}

// Escape what would break a URL path (?, #, spaces, non-ASCII) but keep /, : and @ as typed.
function encodePathish(text) {
  return encodeURI(text).replace(/\?/g, "%3F").replace(/#/g, "%23");
}

// Provider fields -> the spec of /v2/<provider>/<spec>, or "" when the repository is empty.
export function buildSpec(provider, repo, ref) {
  let name = String(repo || "").trim();
  if (!name) return "";
  if (kindOf(provider) === "escaped-url") {
    name = encodeURIComponent(name);
  } else {
    name = encodePathish(name.replace(/^\/+|\/+$/g, ""));
  }
  if (!refEnabled(provider)) return name;
  const fallback = (provider.ref && provider.ref.default) || "HEAD";
  return `${name}/${encodePathish(String(ref || "").trim() || fallback)}`;
}

// The path of the loading page, with the file or URL to open.
export function launchPath(providerId, spec, pathType, path) {
  let link = `v2/${providerId}/${spec}`;
  const open = String(path || "").trim();
  if (open) {
    const cleaned = pathType === "url" ? open : open.replace(/^\/+/, "");
    link += `?${pathType === "url" ? "urlpath" : "labpath"}=${encodeURIComponent(cleaned)}`;
  }
  return link;
}

export function shareUrl(baseUrl, providerId, spec, pathType, path) {
  const base = baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`;
  return base + launchPath(providerId, spec, pathType, path);
}

// The badge snippets, in the same forms as mybinder.org's.
export function badges(baseUrl, link) {
  const base = baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`;
  const image = `${base}badge_logo.svg`;
  return {
    markdown: `[![Binder](${image})](${link})`,
    rst: `.. image:: ${image}\n :target: ${link}`,
  };
}

// The ready event -> the URL to open: labpath -> doc/tree/X, filepath -> tree/X, else urlpath
// (BinderHub's meanings), else the launcher's default page (`default_url` of a launching event,
// e.g. /lab); the token is added as a query parameter. The result always stays on the server's
// origin.
export function serverUrl(url, token, params, defaultUrl = "") {
  const server = new URL(url);
  const base = server.pathname.endsWith("/") ? server.pathname : `${server.pathname}/`;
  const labpath = params.get("labpath");
  const filepath = params.get("filepath");
  const urlpath = params.get("urlpath");
  let rest = "";
  if (labpath) rest = `doc/tree/${encodePathish(labpath.replace(/^\/+/, ""))}`;
  else if (filepath) rest = `tree/${encodePathish(filepath.replace(/^\/+/, ""))}`;
  else if (urlpath) rest = urlpath.replace(/^\/+/, "");
  else if (defaultUrl) rest = String(defaultUrl).replace(/^\/+/, "").replace(/[?#].*$/, "");
  const target = new URL(server.origin + base + rest);
  if (token) target.searchParams.set("token", token);
  return target.href;
}

// Whether the link itself says what to open (then the launcher's default page does not matter).
export function namesAPage(params) {
  return Boolean(params.get("labpath") || params.get("filepath") || params.get("urlpath"));
}
