"""Factories for the backends the steps call, chosen by config.

Steps ask here and never construct clients themselves, so the chain does not
know which backend runs and tests can hand in their own.  Each factory imports
its backend when it is first chosen, not at the top: a process loads only the
backends its config names (the kubernetes client alone takes about half a second).
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from app.extensions import engine


def engine_client() -> Any:
    return engine.client


def image_store(config: dict[str, Any]) -> Any:
    """One store per process, so its HTTP connections and registry tokens outlive a launch."""
    from tasks.backends.registry import RememberFound, make_image_store

    slot = current_app.extensions.setdefault("bindery.image_store", {})
    if "store" not in slot:
        slot["store"] = RememberFound(make_image_store(config, lambda: engine.client),
                                      config["image_found_cache"])
    return slot["store"]


def kubernetes_api(config: dict[str, Any]) -> Any:
    """One CoreV1Api per process, made on first use (in-cluster account, else kubeconfig)."""
    from tasks.backends.kubernetes_builder import core_api

    slot = current_app.extensions.setdefault("bindery.kubernetes", {})
    if "api" not in slot:
        slot["api"] = core_api(config)
    return slot["api"]


def builder(config: dict[str, Any]) -> Any:
    if config["builder"] == "kubernetes":
        from tasks.backends.kubernetes_builder import KubernetesBuilder

        return KubernetesBuilder(kubernetes_api(config), config)
    from tasks.backends.docker_builder import DockerBuilder

    return DockerBuilder(config)


def pusher(config: dict[str, Any]) -> Any:
    from tasks.backends.docker_push import DockerPusher

    return DockerPusher(engine.client, config)


def launcher(config: dict[str, Any]) -> Any:
    if config["launcher"] == "jupyterhub":
        from tasks.backends.jupyterhub_launcher import JupyterHubLauncher

        return JupyterHubLauncher(config)
    if config["launcher"] == "bench":
        from tasks.backends.bench_launcher import BenchLauncher

        return BenchLauncher(config)
    from tasks.backends.docker_launcher import DockerLauncher

    return DockerLauncher(engine.client, config)
