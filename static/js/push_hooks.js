// The landing page's "Build on push" box: the URL a repository's host (or CI job) calls after each
// push, and what to paste where (docs/build-on-push.md).  Only text: the page sets it with textContent.

function hookSteps(host, url, tags) {
  const built = tags ? "Pushes to the default branch and tags are built." : "Pushes to the default branch are built.";
  if (host === "github") {
    return [
      "On GitHub: the repository's Settings → Webhooks → Add webhook.",
      `Payload URL: ${url}`,
      "Content type: application/json",
      "Secret: the webhook secret this Bindery's operators gave you (never commit it).",
      "Which events: Just the push event.",
      built,
    ];
  }
  return [
    "On GitLab: the project's Settings → Webhooks → Add new webhook.",
    `URL: ${url}`,
    "Secret token: the webhook secret this Bindery's operators gave you (never commit it).",
    tags ? "Trigger: Push events and Tag push events." : "Trigger: Push events.",
    built,
  ];
}

// {label, url, steps} for a spec of a provider, or null when this Bindery offers nothing for it.
// ``enabled``: {hooks, api, tags} as the operator configured them.
export function pushSettings(baseUrl, provider, spec, enabled) {
  if (!spec) return null;
  const base = baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`;
  if (enabled.hooks && (provider === "gh" || provider === "gl")) {
    const host = provider === "gh" ? "github" : "gitlab";
    const url = `${base}hooks/${host}`;
    return { label: "Webhook URL", url, steps: hookSteps(host, url, enabled.tags) };
  }
  if (enabled.api) {
    const url = `${base}api/prebuild/${provider}/${spec}`;
    return {
      label: "Prebuild URL",
      url,
      steps: [
        `After each push, from a CI job: curl -X POST -H "Authorization: Bearer $BINDERY_TOKEN" ${url}`,
        "BINDERY_TOKEN: an API token from this Bindery's operators, kept in the CI's secrets.",
        ...(enabled.hooks && provider === "git"
          ? [`A GitHub Enterprise or GitLab server can call ${base}hooks/github or ${base}hooks/gitlab instead.`]
          : []),
      ],
    };
  }
  if (enabled.hooks && provider === "git") {
    const url = `${base}hooks/github`;
    return {
      label: "Webhook URL",
      url,
      steps: [`A GitHub Enterprise server: ${url}; a GitLab server: ${base}hooks/gitlab.`,
              ...hookSteps("github", url, enabled.tags).slice(2)],
    };
  }
  return null;
}
