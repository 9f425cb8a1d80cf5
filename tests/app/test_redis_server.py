"""The embedded Redis asks for a password: made once, kept apart, never on a command line."""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path

import pytest
import redis

from app.config import load_config, mask_url_password
from app.redis_server import CONFIG_FILE, PASSWORD_FILE, EmbeddedRedis


def test_without_the_password_redis_refuses_and_with_it_answers(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        # what anything on this machine that finds the port would send
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as bare:
            bare.sendall(b"PING\r\nCONFIG GET dir\r\n")
            time.sleep(0.2)
            answer = bare.recv(4096)
        assert answer.startswith(b"-NOAUTH") and b"+PONG" not in answer and b"dir" not in answer, answer
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
        assert server.password and server.password not in " ".join(server.command()), "ps shows no password"
        assert server.password not in server.shown_url and ":***@" in server.shown_url
        for name in (PASSWORD_FILE, CONFIG_FILE):
            mode = stat.S_IMODE((tmp_path / "redis" / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))
    finally:
        server.stop()


def test_the_password_outlives_a_restart(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "redis").start()
    url, port = first.url, first.port
    first.stop()
    again = EmbeddedRedis(tmp_path / "redis", port=port).start()
    try:
        assert again.url == url
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.close()
    finally:
        again.stop()


def test_a_password_file_completes_a_redis_url_and_is_shown_masked(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    assert server.password  # made on first use
    config = load_config({"redis_url": f"redis://127.0.0.1:{server.port}/0",
                          "redis_password_file": str(tmp_path / "redis" / PASSWORD_FILE)}, environ={})
    assert config["redis_url"] == server.url
    assert mask_url_password(config["redis_url"]) == f"redis://:***@127.0.0.1:{server.port}/0"
    with pytest.raises(Exception, match="redis_password_file"):
        load_config({"redis_url": "redis://127.0.0.1:1/0", "redis_password_file": str(tmp_path / "missing")},
                    environ={})
