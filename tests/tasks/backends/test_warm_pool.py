"""The warm pool against the real engine: atomic claims under concurrency, each server with its own
token, refill, retirement of an old image's pool, max age, quota pressure, and stopping a claimed server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import requests
from flask import Flask

from app import create_app
from app.extensions import docker_client
from app.redis_server import EmbeddedRedis
from tasks.backends import warm_pool
from tasks.backends.docker_launcher import INSTANCE, DockerLauncher
from tests.chp import Chp
from tests.conftest import JUPYTER_IMAGE, remove_image_at_end

pytestmark = pytest.mark.engine


@pytest.fixture
def app(redis_server: EmbeddedRedis, docker_host: str) -> Iterator[Flask]:
    app = create_app({"redis_url": redis_server.url, "docker_host": docker_host,
                      "instance_name": f"test-pool-{uuid.uuid4().hex[:10]}", "launch_ports": "19800-19899",
                      "warm_pool": {JUPYTER_IMAGE: 3}, "default_url": "/"})
    yield app
    engine = docker_client(docker_host)
    with app.app_context():
        launcher = DockerLauncher(engine, app.config["BINDERY"])
        warm_pool.retire_all(launcher)
        launcher.redis.delete(*[key for key in launcher.redis.scan_iter("bindery:pool:*")] or ["-"])
    instance = app.config["BINDERY"]["instance_name"]  # every container this test's instance started
    for container in engine.containers.list(ignore_removed=True,
            all=True, filters={"label": [f"{INSTANCE}={instance}"]}):
        container.remove(force=True)


def _launch(image: str = JUPYTER_IMAGE, **extra: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "image": image, "repo_url": image, "resolved_ref": "bookworm",
            "provider": "image", "spec": image, **extra}


def _answers(url: str, token: str) -> int:
    return requests.get(f"{url}api/contents", params={"token": token}, timeout=5).status_code


def test_twenty_concurrent_claims_of_three_servers(app: Flask, engine: docker.DockerClient) -> None:
    launcher = DockerLauncher(engine, app.config["BINDERY"])
    with app.app_context():
        assert warm_pool.maintain(launcher) == {"retired": 0, "started": 3}
        assert warm_pool.maintain(launcher) == {"retired": 0, "started": 0}  # full: nothing more
    results: list[Any] = []
    launches = [_launch() for _ in range(20)]
    barrier = threading.Barrier(20)

    def take(launch: dict[str, Any]) -> None:
        with app.app_context():
            barrier.wait()
            results.append((launch, warm_pool.claim(DockerLauncher(engine, app.config["BINDERY"]), launch,
                                                    lambda event: None)))

    threads = [threading.Thread(target=take, args=(launch,)) for launch in launches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    hits = [(launch, got) for launch, got in results if got]
    assert len(hits) == 3 and len(results) == 20
    assert sorted(launch["pool"] for launch in launches).count("miss") == 17
    assert len({url for _, (url, _) in hits}) == 3 and len({token for _, (_, token) in hits}) == 3
    tokens = [token for _, (_, token) in hits]
    for _, (url, token) in hits:  # each answers its own token, and no other
        assert _answers(url, token) == 200
        for other in tokens:
            if other != token:
                assert _answers(url, other) == 403
        assert _answers(url, uuid.uuid4().hex) == 403
    with app.app_context():
        assert warm_pool.idle_count(launcher.redis) == 0
        # stopping a launch removes the pooled server it took, found through the claim
        launch, (url, _) = hits[0]
        assert launcher.stop(launch["id"]) == 1
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}api", timeout=2)
        assert warm_pool.maintain(launcher)["started"] == 0  # the 17 misses have not started their servers
        for launch in launches:
            warm_pool.started_after_miss(launcher, launch)
        assert warm_pool.maintain(launcher)["started"] == 3  # refilled


def test_claimed_token_was_never_in_a_published_event(app: Flask, engine: docker.DockerClient) -> None:
    config = {**app.config["BINDERY"], "warm_pool": {JUPYTER_IMAGE: 1}}
    launcher = DockerLauncher(engine, config)
    events: list[dict[str, Any]] = []
    with app.app_context():
        warm_pool.maintain(launcher)
        launch = _launch()
        url, token = launcher.launch(launch, events.append)
        assert launch["pool"] == "hit" and _answers(url, token) == 200
        assert [e["message"] for e in events] == ["Server taken from the warm pool (already started).\n"]
        assert token not in repr(events)
        second = _launch()  # the pool is empty now: a miss starts a server as before
        url2, token2 = launcher.launch(second, events.append)
        assert second["pool"] == "miss" and url2 != url and _answers(url2, token2) == 200
        assert launcher.stop(launch["id"]) == 1 and launcher.stop(second["id"]) == 1


def test_max_age_replaces_idle_servers(app: Flask, engine: docker.DockerClient) -> None:
    config = {**app.config["BINDERY"], "warm_pool": {JUPYTER_IMAGE: 1}, "warm_pool_max_age": 3}
    launcher = DockerLauncher(engine, config)
    with app.app_context():
        warm_pool.maintain(launcher)
        (first,) = warm_pool.idle(launcher.redis, JUPYTER_IMAGE)
        assert warm_pool.maintain(launcher) == {"retired": 0, "started": 0}
        time.sleep(3.1)
        assert warm_pool.maintain(launcher) == {"retired": 1, "started": 1}
        (second,) = warm_pool.idle(launcher.redis, JUPYTER_IMAGE)
        assert second["container"] != first["container"]
        assert not engine.api.containers(all=True, filters={"id": first["container"]})


def test_a_new_image_of_the_spec_retires_the_old_pool(app: Flask, engine: docker.DockerClient) -> None:
    tag = uuid.uuid4().hex[:8]
    newer = f"localhost/bindery-pool-test:{tag}"
    engine.images.get(JUPYTER_IMAGE).tag("localhost/bindery-pool-test", tag)
    spec = "gh/org/pooled/main"
    config = {**app.config["BINDERY"], "warm_pool": {spec: 1}}
    launcher = DockerLauncher(engine, config)
    try:
        with app.app_context():
            assert warm_pool.maintain(launcher)["started"] == 0  # the spec's image is not known yet
            launch = _launch(provider="gh", spec="org/pooled/main", repo_url="https://github.com/org/pooled")
            assert launcher.launch(launch, lambda event: None)  # a miss; its image becomes the pool's
            assert launch["pool"] == "miss"
            assert warm_pool.maintain(launcher) == {"retired": 0, "started": 1}
            (old,) = warm_pool.idle(launcher.redis, JUPYTER_IMAGE)
            warm_pool.note_launch(config, launcher.redis, {**launch, "image": newer})  # a new commit
            assert warm_pool.maintain(launcher) == {"retired": 1, "started": 1}
            assert warm_pool.idle(launcher.redis, JUPYTER_IMAGE) == []
            assert [entry["image"] for entry in warm_pool.idle(launcher.redis, newer)] == [newer]
            assert not engine.api.containers(all=True, filters={"id": old["container"]})
            launcher.stop(launch["id"])
    finally:
        with app.app_context():
            warm_pool.retire_all(launcher)
        remove_image_at_end(newer)


def test_pooled_servers_go_first_under_quota_pressure(app: Flask, engine: docker.DockerClient) -> None:
    config = {**app.config["BINDERY"], "warm_pool": {JUPYTER_IMAGE: 3}, "quota_total": 3, "quota_per_repo": 1}
    launcher = DockerLauncher(engine, config)
    with app.app_context():
        assert warm_pool.maintain(launcher)["started"] == 2  # the pool leaves one of quota_total free
        # idle pooled servers do not count against the repository's quota
        launcher.check_quota(JUPYTER_IMAGE)
        full = DockerLauncher(engine, {**config, "quota_total": 2})
        full.check_quota("https://example.org/other")  # full: one pooled server makes room
        assert warm_pool.idle_count(launcher.redis) == 1 and launcher.running() == 1


def test_cleanup_counts_a_claimed_servers_age_from_its_claim(app: Flask, engine: docker.DockerClient) -> None:
    config = {**app.config["BINDERY"], "warm_pool": {JUPYTER_IMAGE: 1}}
    launcher = DockerLauncher(engine, config)
    with app.app_context():
        warm_pool.maintain(launcher)
        time.sleep(2)
        assert launcher.cleanup(max_age=1) == 0  # idle pooled servers are the pool's to retire
        launch = _launch()
        assert warm_pool.claim(launcher, launch, lambda event: None)
        assert launcher.cleanup(max_age=60) == 0  # claimed just now
        time.sleep(1.1)
        assert launcher.cleanup(max_age=1) == 1



def test_behind_the_proxy_a_pooled_server_is_routed_when_claimed_and_unrouted_when_stopped(
        app: Flask, engine: docker.DockerClient, tmp_path: Any) -> None:
    chp = Chp(tmp_path / "chp").start()
    try:
        config = {**app.config["BINDERY"], "proxy_api_url": chp.api_url, "proxy_auth_token": chp.token,
                  "public_url": chp.url}
        launcher = DockerLauncher(engine, config)
        with app.app_context():
            entry = warm_pool.start_server(launcher, {"image": JUPYTER_IMAGE, "repo_url": JUPYTER_IMAGE,
                                                      "resolved_ref": "bookworm"})
            assert entry["base"] == f"/user/{entry['id']}/"
            assert not [path for path in chp.api().routes() if path.startswith("/user/")], "idle: no route yet"
            launch = _launch()
            url, token = warm_pool.claim(launcher, launch, lambda event: None) or ("", "")
            assert url == f"{chp.url}/user/{entry['id']}/"
            assert _answers(url, token) == 200, "through CHP, under the pool id's base_url"
            assert launcher.stop(launch["id"]) == 1
        assert f"/user/{entry['id']}" not in chp.api().routes()
    finally:
        chp.stop()
