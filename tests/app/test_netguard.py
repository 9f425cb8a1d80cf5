"""Repository URLs and registry_url refuse non-public addresses unless the operator allows them.

The rest of the suite allows loopback explicitly (tests/conftest.py); these tests load their
configs without that allowance and show the refusals.  Real git (2.39) runs against a real git
server on loopback; no connection is ever made to a private or metadata address (refused first).
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from app import create_app, netguard
from app.config import load_config
from app.errors import ConfigError, ProviderError
from app.redis_server import EmbeddedRedis, free_port, stop_process
from providers import get_provider
from providers import git as git_module
from tests.conftest import LOOPBACK_ALLOWED, GitServer

REFUSED = [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.0.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("fd12::1", "private"),
    ("100.64.0.1", "private"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "private"), ("255.255.255.255", "private"),
    ("169.254.169.254", "cloud metadata"), ("fd00:ec2::254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"), ("192.0.0.192", "cloud metadata"), ("168.63.129.16", "cloud metadata"),
    ("::ffff:127.0.0.1", "loopback, as 127.0.0.1"), ("::ffff:169.254.169.254", "cloud metadata, as 169.254.169.254"),
    ("2002:7f00:1::", "loopback, as 127.0.0.1"), ("64:ff9b::a9fe:a9fe", "cloud metadata, as 169.254.169.254"),
    ("::7f00:1", "loopback, as 127.0.0.1"),
]
PUBLIC = ["8.8.8.8", "151.101.1.69", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]


def no_allowance(**overrides: Any) -> dict[str, Any]:
    return load_config({"allowed_private_networks": [], **overrides}, environ={})


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_non_public_addresses_are_refused_by_default(address: str, kind: str) -> None:
    ip = ipaddress.ip_address(address)
    assert netguard.kind_of(ip) == kind
    assert not netguard.is_allowed(ip, no_allowance())


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert netguard.kind_of(ipaddress.ip_address(address)) is None


def test_allowed_networks_allow_but_metadata_needs_its_own_entry() -> None:
    config = no_allowance(allowed_private_networks=["127.0.0.0/8", "169.254.0.0/16", "::/0"])
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "169.254.1.1", "::1"):
        assert netguard.is_allowed(ipaddress.ip_address(address), config), address
    for address in ("10.0.0.1", "169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"):
        assert not netguard.is_allowed(ipaddress.ip_address(address), config), address
    one = no_allowance(allowed_private_networks=["169.254.169.254/32"])
    assert netguard.is_allowed(ipaddress.ip_address("169.254.169.254"), one)


def test_bad_network_setting_stops_the_start() -> None:
    with pytest.raises(ConfigError, match="allowed_private_networks: 'nope' is not an IP network"):
        load_config(environ={"BINDERY_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8,nope"})


@pytest.mark.parametrize("host", ["localhost", "2130706433", "0x7f.1", "127.1"])
def test_names_and_odd_spellings_are_judged_after_dns(host: str) -> None:
    """``localhost`` (/etc/hosts) and the numeric forms git and curl accept all resolve to 127.0.0.1."""
    with pytest.raises(netguard.AddressRefused, match=f"host {host} resolves to 127.0.0.1"):
        netguard.check_host(host, 80, no_allowance(), "repository URL")
    assert netguard.check_host(host, 80, load_config(LOOPBACK_ALLOWED, environ={}), "x") == \
        [ipaddress.ip_address("127.0.0.1")]


def test_unresolvable_host_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="could not resolve host no-such-host.invalid"):
        netguard.check_host("no-such-host.invalid", 443, no_allowance(), "repository URL")


# --- the git provider ------------------------------------------------------------------------

def spec(url: str, ref: str = "main") -> str:
    return f"{urllib.parse.quote(url, safe='')}/{ref}"


@pytest.fixture
def git_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every ``git ls-remote`` started (then really started)."""
    seen: list[list[str]] = []
    real = subprocess.Popen

    def spy(args: list[str], **kwargs: Any) -> Any:
        if "ls-remote" in args:
            seen.append(list(args))
        return real(args, **kwargs)

    monkeypatch.setattr(git_module.subprocess, "Popen", spy)
    return seen


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/r.git", "https://[::1]/r.git", "git://10.1.2.3/r.git", "http://169.254.169.254/latest",
    "http://[::ffff:169.254.169.254]/x", "https://[fd00:ec2::254]/x", "http://0.0.0.0:80/r.git",
])
def test_ip_literal_is_refused_when_the_spec_is_parsed(url: str, git_runs: list[list[str]]) -> None:
    with pytest.raises(netguard.AddressRefused) as info:
        get_provider("git", spec(url), no_allowance())
    assert info.value.status_code == 403
    assert "allowed_private_networks" in info.value.message
    assert git_runs == []


def test_name_resolving_to_loopback_is_refused_before_git_runs(git_server: GitServer,
                                                                git_runs: list[list[str]]) -> None:
    url, _ = git_server.make_repo("FROM scratch\n")
    by_name = url.replace("127.0.0.1", "localhost")
    provider = get_provider("git", spec(by_name), no_allowance())  # a name: judged after DNS
    with pytest.raises(netguard.AddressRefused, match="host localhost resolves to 127.0.0.1"):
        provider.resolve()
    with pytest.raises(netguard.AddressRefused):
        provider.repo2docker_env()  # the build checks again before repo2docker fetches
    assert git_runs == []


def test_allowed_loopback_resolves_with_git_pinned_to_the_checked_address(
        git_server: GitServer, git_runs: list[list[str]]) -> None:
    url, sha = git_server.make_repo("FROM scratch\n")
    by_name = url.replace("127.0.0.1", "localhost")
    port = urllib.parse.urlsplit(url).port
    config = load_config(LOOPBACK_ALLOWED, environ={})
    provider = get_provider("git", spec(by_name), config)
    assert provider.resolve().ref == sha
    assert git_runs[-1][:6] == ["git", "-c", "http.followRedirects=false",
                                "-c", f"http.curloptResolve=localhost:{port}:127.0.0.1", "ls-remote"]
    env = provider.repo2docker_env()
    pairs = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(int(env["GIT_CONFIG_COUNT"]))}
    assert pairs["http.curloptResolve"] == f"localhost:{port}:127.0.0.1"
    assert pairs["http.followRedirects"] == "false"


def test_git_connects_to_the_pinned_address_not_to_what_dns_says(git_server: GitServer) -> None:
    """The pin closes DNS rebinding: git uses it even for a name DNS does not know at all."""
    url, sha = git_server.make_repo("FROM scratch\n")
    port = urllib.parse.urlsplit(url).port
    pinned = url.replace("127.0.0.1", "rebind.bindery.invalid")
    pairs = netguard.git_pin_config(pinned, [ipaddress.ip_address("127.0.0.1")])
    result = subprocess.run(["git", *[a for k, v in pairs for a in ("-c", f"{k}={v}")], "ls-remote", "--", pinned,
                             "main"], capture_output=True, text=True, timeout=30,
                            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(sha)
    assert pairs[1] == ("http.curloptResolve", f"rebind.bindery.invalid:{port}:127.0.0.1")


@pytest.fixture
def redirector(git_server: GitServer) -> Iterator[str]:
    """A loopback server that redirects every request to the git server (as a hostile host would
    redirect to the metadata service)."""

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(301)
            self.send_header("Location", git_server.url + self.path)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_redirects_are_not_followed(git_server: GitServer, redirector: str) -> None:
    url, _ = git_server.make_repo("FROM scratch\n")
    moved = redirector + urllib.parse.urlsplit(url).path
    with pytest.raises(ProviderError, match="could not reach"):
        get_provider("git", spec(moved), load_config(LOOPBACK_ALLOWED, environ={})).resolve()


# --- the web and the settings -----------------------------------------------------------------

def test_web_answers_a_failed_event_naming_the_setting(redis_server: EmbeddedRedis) -> None:
    app = create_app({"redis_url": redis_server.url, "launcher": "bench", "allowed_private_networks": []})
    response = app.test_client().get(f"/build/git/{spec('http://169.254.169.254/latest/meta-data')}",
                                     headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    events = [json.loads(line[5:]) for line in response.get_data(as_text=True).splitlines()
              if line.startswith("data:")]
    assert events == [{"phase": "failed", "status_code": 403, "message": events[0]["message"]}]
    assert "169.254.169.254" in events[0]["message"] and "allowed_private_networks" in events[0]["message"]


def test_ckan_site_on_a_private_address_is_refused() -> None:
    url = "http://192.168.0.10/dataset/x"
    with pytest.raises(netguard.AddressRefused):
        get_provider("ckan", urllib.parse.quote(url, safe=""), no_allowance())
    by_name = get_provider("ckan", urllib.parse.quote("http://localhost:9/dataset/x", safe=""), no_allowance())
    with pytest.raises(netguard.AddressRefused, match="CKAN site host localhost"):
        by_name.resolve()


@pytest.mark.parametrize("registry_url", ["http://127.0.0.1:5000", "http://localhost:5000",
                                          "https://[::1]/", "http://169.254.169.254/"])
def test_registry_url_on_a_non_public_address_stops_the_start(registry_url: str) -> None:
    with pytest.raises(ConfigError, match="registry_url: registry_url host .* allowed_private_networks"):
        load_config({"registry_url": registry_url}, environ={})


def test_registry_url_allowed_or_unresolvable_loads() -> None:
    assert load_config({"registry_url": "http://localhost:5000", **LOOPBACK_ALLOWED}, environ={})["registry_url"]
    # A name that does not resolve now (offline start, or a cluster-only name) is not judged at start.
    assert load_config({"registry_url": "https://registry.bindery.invalid"}, environ={})["registry_url"]


def test_a_git_daemon_url_is_pinned_to_the_checked_address(git_server: GitServer) -> None:
    """git:// has no curl: the URL itself is rewritten (insteadOf) to the address that was checked."""
    served, sha = git_server.make_repo("FROM scratch\n")
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", f"--base-path={git_server.root}", "--export-all",
                               "--listen=127.0.0.1", f"--port={port}", str(git_server.root)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pinned = f"git://rebind.bindery.invalid:{port}/{served.rsplit('/', 1)[1]}"
        pairs = netguard.git_pin_config(pinned, [ipaddress.ip_address("127.0.0.1")])
        assert pairs == [(f"url.git://127.0.0.1:{port}/.insteadOf", f"git://rebind.bindery.invalid:{port}/")]
        env = {"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", **netguard.git_config_env(pairs)}
        deadline = time.monotonic() + 10
        while True:  # the daemon takes a moment to listen
            result = subprocess.run(["git", "ls-remote", "--", pinned, "main"], capture_output=True, text=True,
                                    timeout=30, env=env)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert result.returncode == 0, result.stderr  # a name DNS does not know: only the pin can work
        assert result.stdout.startswith(sha)
        unpinned = subprocess.run(["git", "ls-remote", "--", pinned, "main"], capture_output=True, text=True,
                                  timeout=30, env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"})
        assert unpinned.returncode != 0
    finally:
        stop_process(daemon)
