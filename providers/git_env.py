"""The environment that hands credentials and ssh settings to git (ls-remote) and repo2docker's clone.

Secrets travel only in environment variables: git reads its extra settings from
``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n`` (git >= 2.31),
among them a credential helper that prints two other variables.  Nothing here
ever puts a secret into a URL, a command line, a config file or a message.
The ssh command is built only from the operator's settings, each part quoted.
"""

from __future__ import annotations

import shlex
import urllib.parse
from collections.abc import Iterable
from typing import Any

#: A credential helper (git runs ``!...`` helpers with ``sh -c``) that answers ``get`` from the
#: environment.  The values are printf *arguments*, never its format, so any character is safe.
CREDENTIAL_HELPER = ('!f() { test "$1" = get && printf "username=%s\\npassword=%s\\n" '
                     '"$GIT_CREDENTIAL_USERNAME" "$GIT_CREDENTIAL_PASSWORD"; }; f')

#: The variables of a clone environment that hold secrets (a build pod reads them from a Secret).
SECRET_VARIABLES = frozenset({"GIT_CREDENTIAL_USERNAME", "GIT_CREDENTIAL_PASSWORD"})

#: What git must never do in a worker: ask someone at a terminal, or run a password program.
NO_PROMPTS = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}


def add_git_config(env: dict[str, str], pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``env`` with ``pairs`` appended to the ``GIT_CONFIG_*`` settings it already holds."""
    merged = dict(env)
    count = int(merged.get("GIT_CONFIG_COUNT") or 0)
    for key, value in pairs:
        merged[f"GIT_CONFIG_KEY_{count}"] = key
        merged[f"GIT_CONFIG_VALUE_{count}"] = value
        count += 1
    if count:
        merged["GIT_CONFIG_COUNT"] = str(count)
    return merged


def credential_settings(host_url: str, username: str, password: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(variables, git settings) that make git log in to ``host_url`` (scheme://host[:port]) only.

    The helper is scoped to that host, so a redirect elsewhere gets no credentials.
    """
    return ({"GIT_CREDENTIAL_USERNAME": username, "GIT_CREDENTIAL_PASSWORD": password},
            [(f"credential.{host_url.rstrip('/')}.helper", CREDENTIAL_HELPER)])


def credential_env(host_url: str, username: str, password: str) -> dict[str, str]:
    """:func:`credential_settings` as one environment (for repo2docker's clone)."""
    variables, pairs = credential_settings(host_url, username, password)
    return add_git_config(variables, pairs)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _matches(key: str, url: str) -> int:
    """How specific ``key`` (a URL prefix, or a host[:port]) is for ``url``; 0 when it does not match."""
    parts = urllib.parse.urlsplit(url)
    if "://" not in key:
        host = key.lower().rstrip("/")
        return len(host) if host in (parts.netloc.lower(), (parts.hostname or "").lower()) else 0
    prefix = key.rstrip("/")
    if _origin(prefix) != _origin(url):
        return 0
    rest = url[len(prefix):] if url.lower().startswith(prefix.lower()) else None
    if rest is None or (rest and not rest.startswith("/")):
        return 0  # https://h/org must not match https://h/organisation
    return len(prefix)


def credentials_for(url: str, credentials: dict[str, Any] | None) -> tuple[str, str] | None:
    """The (username, password) of the most specific ``git_credentials`` entry for an http(s) URL."""
    if not credentials or urllib.parse.urlsplit(url).scheme.lower() not in ("http", "https"):
        return None
    best, found = 0, None
    for key, entry in credentials.items():
        score = _matches(str(key), url)
        if score > best:
            best, found = score, (str(entry["username"]), str(entry["password"]))
    return found


def with_https_credentials(env: dict[str, str], url: str, config: dict[str, Any]) -> dict[str, str]:
    """``env`` plus the ``git_credentials`` entry for ``url``, if one applies."""
    found = credentials_for(url, config.get("git_credentials"))
    if found is None:
        return env
    variables, pairs = credential_settings(_origin(url), *found)
    return add_git_config({**env, **variables}, pairs)


def ssh_enabled(config: dict[str, Any]) -> bool:
    """ssh transport is on only when the operator allows it or gives a key."""
    return bool(config.get("git_allow_ssh") or config.get("git_ssh_key"))


def ssh_command(config: dict[str, Any]) -> str:
    """``GIT_SSH_COMMAND``: never prompts, only known host keys, from the operator's settings only.

    git splits this string like a shell and appends ``[-p port] host command`` as
    separate arguments, so every part here is quoted and no user input is in it.
    """
    args = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={max(1, int(float(config.get('provider_timeout') or 20)))}"]
    if config.get("git_ssh_known_hosts"):
        args += ["-o", f"UserKnownHostsFile={config['git_ssh_known_hosts']}",
                 "-o", "GlobalKnownHostsFile=/dev/null"]
    if config.get("git_ssh_key"):
        args += ["-i", str(config["git_ssh_key"]), "-o", "IdentitiesOnly=yes"]
    return " ".join(shlex.quote(arg) for arg in args)


def ssh_env(config: dict[str, Any]) -> dict[str, str]:
    """The environment git needs for an ssh remote."""
    return {"GIT_SSH_COMMAND": ssh_command(config), "GIT_SSH_VARIANT": "ssh"}
