"""The thin image of a content-only commit: the earlier image plus the commit's content.

Standalone on purpose (the standard library and docker-py only): the docker builder calls it
in the worker, and build pods run this very file (shipped in the repo2docker ConfigMap) with
``python3 thin_build.py '<plan JSON>'`` — the repo2docker image has Python, git and docker-py.

The content goes where repo2docker puts it and as it does: ``COPY --chown=<user>:<user> src/
${REPO_DIR}/`` with the files owned by uid 1000 in the context (repo2docker's ``_filter_tar``),
``.dockerignore``/``.containerignore`` applied and ``.git`` kept; the files the earlier commit
had and this one deleted are removed first; the start script is made executable again (as
repo2docker does after copying). User, working directory, entrypoint and command come with
the earlier image; its labels too, with ``repo2docker.ref`` set to the new commit.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

Emit = Callable[[dict[str, Any]], None]


def checkout(repo_url: str, resolved_ref: str, directory: Path, env: dict[str, str], timeout: float) -> None:
    """A clone of the repository at the commit (arguments after ``--``; never a shell)."""
    git = ["git", "-c", "advice.detachedHead=false"]
    subprocess.run([*git, "clone", "-q", "--no-checkout", "--", repo_url, str(directory)], check=True,
                   env=env, timeout=timeout, capture_output=True, stdin=subprocess.DEVNULL)
    subprocess.run([*git, "-C", str(directory), "checkout", "-q", resolved_ref, "--"], check=True, env=env,
                   timeout=timeout, capture_output=True, stdin=subprocess.DEVNULL)


def deleted_since(directory: Path, base_ref: str, resolved_ref: str) -> list[str] | None:
    """Files the base commit had and this one has not (None: the base commit is not in the clone)."""
    done = subprocess.run(["git", "-C", str(directory), "diff", "--name-only", "--diff-filter=D", "-z",
                           base_ref, resolved_ref, "--"], capture_output=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        return None
    return [name for name in done.stdout.decode(errors="surrogateescape").split("\0") if name]


def content_dir(image_config: dict[str, Any], kind: str) -> str | None:
    """Where the content goes: repo2docker's REPO_DIR, else (Dockerfile images) the working directory."""
    env = dict(item.split("=", 1) for item in image_config.get("Env") or [] if "=" in item)
    if env.get("REPO_DIR"):
        return str(env["REPO_DIR"])
    return (image_config.get("WorkingDir") or None) if kind == "dockerfile" else None


def thin_dockerfile(plan: dict[str, Any], image_config: dict[str, Any], deleted: list[str]) -> str:
    """The thin image's Dockerfile (``plan``: see tasks/backends/environment.py plan_for)."""
    user = image_config.get("User") or ""
    repo_dir = content_dir(image_config, plan["kind"])
    if not repo_dir:
        raise ValueError("the earlier image has no working directory for the content")
    lines = [f"FROM {plan['base_image']}"]
    if deleted:
        lines += ["USER root", "RUN cd " + shlex.quote(repo_dir) + " && rm -rf -- "
                  + " ".join(shlex.quote(name) for name in deleted)]
    chown = f"--chown={user}:{user} " if user and user not in ("root", "0") else ""
    lines.append(f"COPY {chown}src/ {json.dumps(repo_dir + '/')[1:-1]}")
    if deleted and user:
        lines.append(f"USER {user}")
    if plan.get("start_script"):
        lines.append(f"RUN chmod +x {shlex.quote(plan['start_script'])}")
    labels = {"repo2docker.ref": plan["resolved_ref"], "org.bindery.environment": plan["env_hash"],
              "org.bindery.reused-from": plan["base_ref"]}
    lines += [f"LABEL {name}={json.dumps(value)}" for name, value in labels.items()]
    return "\n".join(lines) + "\n"


def context_tar(root: Path, dockerfile: str, uid: int = 1000) -> io.BytesIO:
    """The build context as repo2docker makes it: the Dockerfile and the content under src/."""
    from docker.utils.build import exclude_paths

    exclude: list[str] = []
    for name in (".dockerignore", ".containerignore"):
        if (root / name).is_file():
            exclude += [line.strip() for line in (root / name).read_text().splitlines()
                        if line.strip() and not line.strip().startswith("#")]

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uname = info.gname = ""
        info.uid = info.gid = uid
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        src = tarfile.TarInfo("src")
        src.type = tarfile.DIRTYPE
        src.mode = 0o755
        tar.addfile(owned(src))
        for item in sorted(exclude_paths(str(root), exclude)):
            tar.add(str(root / item), f"src/{item}", recursive=False, filter=owned)
    buffer.seek(0)
    return buffer


def build(client: Any, root: Path, plan: dict[str, Any], emit: Emit, build_client: Any = None) -> None:
    """Build (and with ``plan["push"]``, push) the thin image; raises with the engine's message.

    ``build_client``: the engine that runs the build's RUN steps, when it is not ``client`` (an
    isolated build engine that shares ``client``'s image store: tasks/backends/user_network.py).
    """
    import docker

    try:
        image_config = client.api.inspect_image(plan["base_image"])["Config"]
    except docker.errors.ImageNotFound:
        client.api.pull(plan["base_image"])
        image_config = client.api.inspect_image(plan["base_image"])["Config"]
    deleted = deleted_since(root, plan["base_ref"], plan["resolved_ref"]) if plan["kind"] == "buildpack" else []
    if deleted is None:
        raise ValueError(f"commit {plan['base_ref'][:12]} is not in the repository any more")
    dockerfile = thin_dockerfile(plan, image_config, deleted)
    builder = build_client or client
    for chunk in builder.api.build(fileobj=context_tar(root, dockerfile), custom_context=True, tag=plan["image"],
                                   rm=True, forcerm=True, decode=True, pull=False):
        if "error" in chunk:
            raise RuntimeError(str(chunk["error"]).strip())
        text = str(chunk.get("stream") or "").rstrip()
        if text:
            emit({"phase": "building", "message": text + "\n"})
    if plan.get("push"):
        repository, tag = plan["image"].rsplit(":", 1)
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise RuntimeError(str(chunk["error"]).strip())


#: app.extensions.ENGINE_API_VERSION (this file runs alone in build pods, without the app; a test
#: keeps the two equal)
ENGINE_API_VERSION = "1.41"


def main(argv: list[str]) -> int:
    """In a build pod: clone, build, push; one JSON log line per event (the pod log becomes events)."""
    import docker

    plan = json.loads(argv[1])

    def emit(event: dict[str, Any]) -> None:
        print(json.dumps(event), flush=True)

    with tempfile.TemporaryDirectory(prefix="bindery-thin-") as tmp:
        root = Path(tmp) / "repo"
        checkout(plan["repo_url"], plan["resolved_ref"], root, {**os.environ, "GIT_TERMINAL_PROMPT": "0"}, 600)
        try:
            build(docker.from_env(version=ENGINE_API_VERSION), root, plan, emit)
        except Exception as exc:  # noqa: BLE001 - the pod's exit code and last line say it
            emit({"phase": "failed", "message": f"thin image failed: {exc}\n"})
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
