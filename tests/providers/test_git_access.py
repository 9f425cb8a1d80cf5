"""The git provider over ssh and with https credentials, against real servers on loopback.

Real: OpenSSH's sshd (its own config, host key and authorized_keys in a temporary
directory) serving a bare repository through ``git-upload-pack``; ``git
http-backend`` behind HTTP Basic auth (tests/git_http.py); git itself, and
repo2docker 2024.7.0 cloning with the environment the builders hand it
(``--no-build``: the clone is what needs the credentials).  Nothing is mocked.
"""

from __future__ import annotations

import getpass
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import providers.git as git_module
from app.config import load_config
from app.errors import ConfigError, NotFound, ProviderError, SpecError
from app.logging_setup import secrets_of
from app.redis_server import stop_process
from providers import get_provider
from providers.git import GitProvider
from providers.git_env import ssh_command
from tests.conftest import LOOPBACK_ALLOWED
from tests.git_http import SmartGitServer, make_bare_repo
from tests.providers.conftest import free_port

SECRET = "s3cret-Token-%s'\"$(x)"  # characters a shell or a format string would trip over
USER = "deploy-bot"
R2D = [sys.executable, "-m", "repo2docker"]


def spec_for(url: str, ref: str) -> str:
    return f"{urllib.parse.quote(url, safe='')}/{ref}"


def config(**overrides: Any) -> dict[str, Any]:
    return load_config({**LOOPBACK_ALLOWED, "provider_timeout": 15, **overrides}, environ={})


def clone_with(provider: GitProvider, ref: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """repo2docker fetching the repository with the environment a builder gives it (docker_builder)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **provider.repo2docker_env()}
    env.pop("DOCKER_HOST", None)
    return subprocess.run([*R2D, "--no-build", "--no-run", "--json-logs", "--ref", ref, "--", provider.repo_url()],
                          env=env, cwd=tmp, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


# --- https with credentials -----------------------------------------------------------------------

@dataclass
class Private:
    server: SmartGitServer
    url: str
    sha: str
    tag_sha: str


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    """A repository behind HTTP Basic auth (USER / SECRET), as a private repository on a git host."""
    root = tmp_path_factory.mktemp("private")
    sha = make_bare_repo(root / "team" / "private.git", {"README.md": "private\n"}, tag="v1")
    tag_sha = subprocess.run(["git", "-C", str(root / "team" / "private.git"), "rev-parse", "v1"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with SmartGitServer(root, auth=(USER, SECRET)) as server:
        yield Private(server, f"{server.url}/team/private.git", sha, tag_sha)


def creds(key: str) -> dict[str, Any]:
    return {"git_credentials": {key: {"username": USER, "password": SECRET}}}


def test_without_credentials_is_not_found_at_once(private: Private) -> None:
    started = time.monotonic()
    with pytest.raises(NotFound, match="needs credentials") as err:
        GitProvider(spec_for(private.url, "main"), config()).resolve()
    assert time.monotonic() - started < 10, "no prompt may hang"
    assert err.value.status_code == 404
    assert private.url in err.value.message


@pytest.mark.parametrize("key", ["127.0.0.1:{port}", "http://127.0.0.1:{port}", "http://127.0.0.1:{port}/team/"])
def test_with_credentials_resolves(private: Private, key: str) -> None:
    port = private.server.httpd.server_address[1]
    cfg = config(**creds(key.format(port=port)))
    assert GitProvider(spec_for(private.url, "main"), cfg).resolve().ref == private.sha
    assert GitProvider(spec_for(private.url, "v1"), cfg).resolve().ref == private.sha
    assert GitProvider(spec_for(private.url, private.sha), cfg).resolve().ref == private.sha
    with pytest.raises(NotFound, match="ref no-such not found"):
        GitProvider(spec_for(private.url, "no-such"), cfg).resolve()


def test_credentials_of_another_prefix_or_host_are_not_used(private: Private) -> None:
    port = private.server.httpd.server_address[1]
    for key in (f"http://127.0.0.1:{port}/te", f"http://127.0.0.1:{port}/other/", f"127.0.0.1:{free_port()}",
                f"https://127.0.0.1:{port}"):
        with pytest.raises(NotFound, match="needs credentials"):
            GitProvider(spec_for(private.url, "main"), config(**creds(key))).resolve()


def test_wrong_password_never_shows_in_the_message(private: Private) -> None:
    port = private.server.httpd.server_address[1]
    wrong = {"git_credentials": {f"127.0.0.1:{port}": {"username": USER, "password": "wrong-Pass-123"}}}
    with pytest.raises(NotFound) as err:
        GitProvider(spec_for(private.url, "main"), config(**wrong)).resolve()
    assert "wrong-Pass-123" not in err.value.message and USER not in err.value.message


def test_the_secret_is_in_no_argument_url_message_or_log(private: Private, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    port = private.server.httpd.server_address[1]
    cfg = config(**creds(f"127.0.0.1:{port}"))
    seen: list[tuple[list[str], dict[str, str]]] = []
    real = subprocess.Popen

    def spy(args: list[str], **kwargs: Any) -> Any:
        if "ls-remote" in args:  # (the server's http-backend runs through Popen too)
            seen.append((args, kwargs["env"]))
        return real(args, **kwargs)
    monkeypatch.setattr(git_module.subprocess, "Popen", spy)
    provider = GitProvider(spec_for(private.url, "main"), cfg)
    assert provider.resolve().ref == private.sha
    with pytest.raises(NotFound) as err:
        GitProvider(spec_for(private.url, "nope"), cfg).resolve()
    assert SECRET not in err.value.message
    assert len(seen) == 2
    for args, env in seen:
        assert not any(SECRET in arg for arg in args), args
        assert env["GIT_CREDENTIAL_PASSWORD"] == SECRET  # only in the environment
    assert SECRET not in provider.repo_url() and SECRET not in provider.build_slug()
    assert SECRET not in caplog.text
    assert SECRET in secrets_of(cfg), "the log formatter masks it should it ever be logged"
    assert all(sent for path, sent in private.server.requests[-2:]), "git sent the credentials"


def test_repo2docker_clones_with_the_same_credentials(private: Private, tmp_path: Path) -> None:
    port = private.server.httpd.server_address[1]
    provider = GitProvider(spec_for(private.url, "main"), config(**creds(f"127.0.0.1:{port}")))
    done = clone_with(provider, private.sha, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert SECRET not in done.stdout + done.stderr
    refused = clone_with(GitProvider(spec_for(private.url, "main"), config()), private.sha, tmp_path)
    assert refused.returncode != 0, "without credentials the clone must fail"
    assert "terminal prompts disabled" in refused.stdout + refused.stderr


def test_credentials_setting_is_checked() -> None:
    for bad in ({"h": {"username": "u"}}, {"ftp://h/": {"username": "u", "password": "p"}},
                {"https://u:p@h/": {"username": "u", "password": "p"}},
                {"h": {"username": "u", "password": "a\nb"}}, ["h"]):
        with pytest.raises(ConfigError, match="git_credentials"):
            load_config({"git_credentials": bad}, environ={})


# --- ssh ---------------------------------------------------------------------------------------------

@dataclass
class SshServer:
    port: int
    alias: str  # a second loopback address where sshd listens on 22, for scp-like URLs ("" if not root)
    repo: Path
    shas: dict[str, str]
    key: Path
    other_key: Path
    known_hosts: Path
    wrong_known_hosts: Path


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """OpenSSH's sshd on 127.0.0.1:<free port> (and on 22 of a random 127.x.y.z when root), key login only."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd):
        pytest.fail("sshd is missing: scripts/test-setup.sh installs openssh-server")
    tmp = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(tmp / "host.key").split()[:2]
    client_pub = _keygen(tmp / "client.key")
    _keygen(tmp / "other.key")
    _keygen(tmp / "stranger.key")
    (tmp / "authorized_keys").write_text(client_pub + "\n")
    repo = tmp / "srv" / "repo.git"
    sha = make_bare_repo(repo, {"README.md": "over ssh\n"}, tag="v1")
    port = free_port()
    root = os.geteuid() == 0
    alias = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}" if root else ""
    if alias and _listening(alias, 22):
        alias = ""
    listen = [f"ListenAddress 127.0.0.1:{port}"] + ([f"ListenAddress {alias}:22"] if alias else [])
    (tmp / "sshd_config").write_text("\n".join([
        *listen, f"HostKey {tmp / 'host.key'}", f"PidFile {tmp / 'sshd.pid'}",
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}", "StrictModes no", "UsePAM no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
        f"AllowUsers {getpass.getuser()}", "LogLevel ERROR", "",
    ]))
    hosts = [f"[127.0.0.1]:{port}"] + ([alias] if alias else [])
    (tmp / "known_hosts").write_text("".join(f"{h} {' '.join(host_pub)}\n" for h in hosts))
    stranger = (tmp / "stranger.key.pub").read_text().split()[:2]
    (tmp / "wrong_known_hosts").write_text("".join(f"{h} {' '.join(stranger)}\n" for h in hosts))
    if root:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = open(tmp / "sshd.log", "wb")
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(tmp / "sshd_config")], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _listening("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start: {(tmp / 'sshd.log').read_text()}")
            time.sleep(0.05)
        yield SshServer(port, alias, repo, {"main": sha, "v1": sha}, tmp / "client.key", tmp / "other.key",
                        tmp / "known_hosts", tmp / "wrong_known_hosts")
    finally:
        stop_process(proc)
        log.close()


def ssh_config(server: SshServer, **overrides: Any) -> dict[str, Any]:
    return config(**{"git_ssh_key": str(server.key), "git_ssh_known_hosts": str(server.known_hosts), **overrides})


def ssh_url(server: SshServer, user: str | None = None) -> str:
    return f"ssh://{user or getpass.getuser()}@127.0.0.1:{server.port}{server.repo}"


def test_ssh_is_refused_unless_the_operator_turns_it_on(ssh_server: SshServer) -> None:
    for url in (ssh_url(ssh_server), f"{getpass.getuser()}@127.0.0.1:{ssh_server.repo}"):
        with pytest.raises(SpecError, match="must start with one of http://, https://, git://$"):
            GitProvider(spec_for(url, "main"), config())
    with pytest.raises(ConfigError, match="git_ssh_known_hosts"):
        load_config({"git_allow_ssh": True}, environ={})


@pytest.mark.parametrize("ref, expected", [("main", "main"), ("HEAD", "main"), ("v1", "v1")])
def test_ssh_resolves_branch_tag_and_head(ssh_server: SshServer, ref: str, expected: str) -> None:
    provider = get_provider("git", spec_for(ssh_url(ssh_server), ref), ssh_config(ssh_server))
    assert provider.resolve().ref == ssh_server.shas[expected]


def test_ssh_sha_and_missing_ref(ssh_server: SshServer) -> None:
    sha = ssh_server.shas["main"]
    assert GitProvider(spec_for(ssh_url(ssh_server), sha.upper()), ssh_config(ssh_server)).resolve().ref == sha
    with pytest.raises(NotFound, match="ref no-such not found"):
        GitProvider(spec_for(ssh_url(ssh_server), "no-such"), ssh_config(ssh_server)).resolve()


def test_ssh_without_user_uses_the_workers_login(ssh_server: SshServer) -> None:
    url = f"ssh://127.0.0.1:{ssh_server.port}{ssh_server.repo}"
    assert GitProvider(spec_for(url, "main"), ssh_config(ssh_server)).resolve().ref == ssh_server.shas["main"]


def test_scp_like_url_resolves(ssh_server: SshServer) -> None:
    if not ssh_server.alias:
        pytest.skip("scp-like URLs have no port: needs sshd on port 22 of a loopback alias (root only)")
    url = f"{getpass.getuser()}@{ssh_server.alias}:{ssh_server.repo}"
    provider = GitProvider(spec_for(url, "main"), ssh_config(ssh_server))
    assert provider.address_url == f"ssh://{ssh_server.alias}/"
    assert provider.resolve().ref == ssh_server.shas["main"]


def test_ssh_key_not_authorized_is_not_found(ssh_server: SshServer) -> None:
    cfg = ssh_config(ssh_server, git_ssh_key=str(ssh_server.other_key))
    started = time.monotonic()
    with pytest.raises(NotFound, match="needs credentials"):
        GitProvider(spec_for(ssh_url(ssh_server), "main"), cfg).resolve()
    assert time.monotonic() - started < 10


def test_unknown_host_key_is_refused_not_accepted(ssh_server: SshServer) -> None:
    cfg = ssh_config(ssh_server, git_ssh_known_hosts=str(ssh_server.wrong_known_hosts))
    with pytest.raises(ProviderError, match="git_ssh_known_hosts"):
        GitProvider(spec_for(ssh_url(ssh_server), "main"), cfg).resolve()


def test_repo2docker_clones_over_ssh_with_the_same_environment(ssh_server: SshServer, tmp_path: Path) -> None:
    provider = GitProvider(spec_for(ssh_url(ssh_server), "main"), ssh_config(ssh_server))
    env = provider.repo2docker_env()
    assert env["GIT_SSH_COMMAND"] == ssh_command(provider.config)
    assert "ssh" in env["GIT_ALLOW_PROTOCOL"].split(":")
    done = clone_with(provider, ssh_server.shas["main"], tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("why, url", [
    ("password", "ssh://git:pw@example.org/r.git"),
    ("option as user", "ssh://-oProxyCommand=x@example.org/r.git"),
    ("option as host", "ssh://git@-oProxyCommand=x/r.git"),
    ("no path", "ssh://git@example.org"),
    ("scp option host", "git@-oProxyCommand=x:r.git"),
    ("scp option user", "-x@example.org:r.git"),
    ("scp option path", "git@example.org:-r.git"),
    ("scp no path", "git@example.org:"),
    ("scp password", "git:pw@example.org:r.git"),
    ("scp shell in host", "git@$(touch x):r.git"),
    ("scp no host", "git@:r.git"),
    ("ext transport", "ext::ssh"),
    ("fd transport", "fd::17"),
])
def test_ssh_urls_refused(ssh_server: SshServer, why: str, url: str) -> None:
    with pytest.raises(SpecError) as err:
        GitProvider(spec_for(url, "main"), ssh_config(ssh_server))
    assert "pw" not in err.value.message.replace("password", "")


def test_ssh_command_quotes_operator_paths_and_holds_no_user_input(tmp_path: Path) -> None:
    known = tmp_path / "known"
    known.write_text("")
    key = tmp_path / "id;touch pwned"
    cfg_ok = config(git_ssh_key=str(tmp_path / "id_ed25519"), git_ssh_known_hosts=str(known))
    command = ssh_command(cfg_ok)
    assert command.split()[:1] == ["ssh"] and "BatchMode=yes" in command and "StrictHostKeyChecking=yes" in command
    assert f"UserKnownHostsFile={known}" in command
    with pytest.raises(ConfigError, match="git_ssh_key"):
        config(git_ssh_key=str(tmp_path / "id key"), git_ssh_known_hosts=str(known))
    import shlex
    quoted = ssh_command({**cfg_ok, "git_ssh_key": str(key)})
    assert shlex.split(quoted)[shlex.split(quoted).index("-i") + 1] == str(key), "one argument, not a command"
    provider = GitProvider(spec_for("git@example.org:$(id)`id`.git", "main"), cfg_ok)
    command = provider.repo2docker_env()["GIT_SSH_COMMAND"]
    assert command == ssh_command(cfg_ok) and "$(" not in command and "`" not in command
