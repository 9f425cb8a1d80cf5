"""Content-only commits: reuse the image of an unchanged environment instead of a full build.

A repository's *environment* is the set of files repo2docker 2024.7.0 reads to build it
(its buildpacks' configuration files in the root, or only in ``binder/`` / ``.binder/`` when
that exists; for a Dockerfile repository, the Dockerfile and the files its COPY/ADD lines
name).  Their hash names the environment; Redis remembers which full build made an image
of each (repository, environment) (``keys.ENVIRONMENT``).  When a new commit has an
environment seen before and that image is still there, the build is a *thin image*: the
earlier image plus the commit's content, put where repo2docker puts it and as it does
(``COPY --chown=<user>:<user> src/ ${REPO_DIR}/``, the files the earlier commit had and
this one deleted removed, the start script made executable again), with the earlier
image's user, working directory, entrypoint and command, and its labels with
``repo2docker.ref`` set to the new commit.

Where that cannot be guaranteed to equal a full build, :func:`decide` says why and the
build is a full one: a Dockerfile that copies the whole context (``COPY . …``) or a file
it cannot name (variables, URLs), a ``postBuild`` (it may read the content; the operator
may allow it), a repository installed as a package (``setup.py``, ``DESCRIPTION``, a Julia
package, ``-e .`` in requirements), ``content_reuse`` off.

A Dockerfile repository's full build holds only what its Dockerfile copies; its thin image
also carries the commit's content in the image's working directory (REPO_DIR when set),
owned by the image's user: the files of the link are there, as with every buildpack image.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import keys
from tasks.backends import thin_build

Emit = Callable[[dict[str, Any]], None]

# repo2docker 2024.7.0's buildpacks (binder_path(...) in repo2docker/buildpacks/*): read from
# binder/ or .binder/ when one exists, else from the root.
CONFIG_FILES = (
    "Dockerfile", "environment.yml", "requirements.txt", "requirements3.txt", "Pipfile", "Pipfile.lock",
    "apt.txt", "runtime.txt", "install.R", "Project.toml", "JuliaProject.toml", "Manifest.toml",
    "JuliaManifest.toml", "REQUIRE", "default.nix", "postBuild", "start",
    ".dockerignore", ".containerignore",
)
# Only in the root and only without a binder directory: they install the repository itself.
PACKAGE_FILES = {"setup.py": "setup.py installs the repository itself as a package",
                 "DESCRIPTION": "DESCRIPTION installs the repository itself as an R package"}
GIT_PROVIDERS = {"gh", "gl", "git", "gist"}
RECORD_TTL = 30 * 86400
_LOCAL_REQUIREMENT = re.compile(r"^\s*(-e|--editable|-r|--requirement|-c|--constraint)?\s*(\.|\./|file:|/)",
                                re.MULTILINE)
_YAML_LOCAL = re.compile(r"^\s*-\s+((-e|--editable|-r|--requirement|-c|--constraint)\b|\.\.?/?\s*$|file:)",
                         re.MULTILINE)
_INCLUDES = re.compile(r"^\s*(-e|--editable|-r|--requirement|-c|--constraint)\b", re.MULTILINE)


@dataclass
class Decision:
    """What a commit's tree says: its environment files (and hash), or why it needs a full build."""

    kind: str                           # "dockerfile" or "buildpack"
    files: list[str] = field(default_factory=list)
    binder_dir: str = ""
    full_reason: str | None = None
    env_hash: str = ""
    start_script: str | None = None

    @property
    def reusable(self) -> bool:
        return self.full_reason is None


def _binder_dir(root: Path) -> str:
    found = [name for name in ("binder", ".binder") if (root / name).is_dir()]
    return found[0] if len(found) == 1 else ""


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in dockerfile.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        parts = current.split(None, 1)
        result.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        current = ""
    return result


def _copy_sources(arguments: str) -> tuple[list[str], bool]:
    """Sources of a COPY/ADD line and whether they come from another stage/image (--from)."""
    if arguments.lstrip().startswith("["):
        words = json.loads(arguments)
    else:
        words = shlex.split(arguments)
    flags = [word for word in words if word.startswith("--")]
    rest = [word for word in words if not word.startswith("--")]
    return rest[:-1], any(flag.startswith("--from") for flag in flags)


def _dockerfile_environment(root: Path, dockerfile: Path) -> tuple[list[str], str | None]:
    """Files a Dockerfile copies or adds from the context, or why they cannot be known."""
    files: set[str] = set()
    for instruction, arguments in _instructions(dockerfile.read_text(errors="replace")):
        if instruction not in ("COPY", "ADD"):
            continue
        try:
            sources, other_stage = _copy_sources(arguments)
        except ValueError:
            return [], f"cannot read the {instruction} line {arguments!r}"
        if other_stage:
            continue
        for source in sources:
            clean = source.strip().lstrip("/")
            while clean.startswith("./"):
                clean = clean[2:]
            if clean in ("", ".", "*") or clean.startswith(".."):
                return [], f"the Dockerfile copies the whole repository ({instruction} {source} …)"
            if "$" in clean:
                return [], f"the Dockerfile copies {source!r}, which names a variable"
            if instruction == "ADD" and "://" in clean:
                return [], f"the Dockerfile adds {source!r} from the network"
            matches = [clean] if not any(c in clean for c in "*?[") else [
                str(path.relative_to(root)) for path in root.glob(clean)]
            for match in matches:
                path = root / match
                if path.is_dir():
                    files.update(str(p.relative_to(root)) for p in path.rglob("*")
                                 if p.is_file() and ".git" not in p.relative_to(root).parts)
                else:
                    files.add(match)
    return sorted(files), None


def decide(root: Path, *, allow_postbuild: bool = False) -> Decision:
    """Which files of the tree at ``root`` make its environment, or why only a full build is safe."""
    binder = _binder_dir(root)
    if (root / "binder").is_dir() and (root / ".binder").is_dir():
        return Decision("buildpack", full_reason="the repository has both binder/ and .binder/")
    config_dir = root / binder if binder else root
    dockerfile = config_dir / "Dockerfile"
    if dockerfile.is_file():
        copied, reason = _dockerfile_environment(root, dockerfile)
        found = sorted({str(dockerfile.relative_to(root)), *copied,
                        *(name for name in (".dockerignore", ".containerignore") if (root / name).is_file())})
        decision = Decision("dockerfile", files=found, binder_dir=binder, full_reason=reason)
    else:
        found = sorted(str((config_dir / name).relative_to(root)) for name in CONFIG_FILES
                       if (config_dir / name).is_file())
        decision = Decision("buildpack", files=found, binder_dir=binder)
        decision.full_reason = _buildpack_reason(root, config_dir, binder, allow_postbuild)
        start = config_dir / "start"
        decision.start_script = str(start.relative_to(root)) if start.is_file() else None
    decision.env_hash = environment_hash(root, decision)
    return decision


def _buildpack_reason(root: Path, config_dir: Path, binder: str, allow_postbuild: bool) -> str | None:
    if not binder:
        for name, reason in PACKAGE_FILES.items():
            if (root / name).is_file():
                return reason
    if (config_dir / "postBuild").is_file() and not allow_postbuild:
        return "postBuild may read the repository's content (content_reuse_allow_postbuild is off)"
    for name in ("requirements.txt", "requirements3.txt"):
        path = config_dir / name
        if path.is_file() and (_LOCAL_REQUIREMENT.search(path.read_text(errors="replace"))
                               or _INCLUDES.search(path.read_text(errors="replace"))):
            return f"{path.relative_to(root)} installs or includes files of the repository"
    environment = config_dir / "environment.yml"
    if environment.is_file() and _YAML_LOCAL.search(environment.read_text(errors="replace")):
        return "environment.yml installs or includes files of the repository"
    pipfile = config_dir / "Pipfile"
    if pipfile.is_file() and re.search(r"path\s*=", pipfile.read_text(errors="replace")):
        return "Pipfile installs files of the repository (path = …)"
    for name in ("Project.toml", "JuliaProject.toml"):
        path = config_dir / name
        if path.is_file() and re.search(r"^\s*uuid\s*=", path.read_text(errors="replace"), re.MULTILINE):
            return f"{name} makes the repository a Julia package, whose source is built"
    nix = config_dir / "default.nix"
    if nix.is_file() and "./" in nix.read_text(errors="replace"):
        return "default.nix refers to files of the repository"
    return None


def environment_hash(root: Path, decision: Decision) -> str:
    """sha256 over the kind, the binder directory and each environment file's path and content."""
    digest = hashlib.sha256(f"{decision.kind}\n{decision.binder_dir}\n".encode())
    for name in decision.files:
        path = root / name
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
        digest.update(f"{name}\0{content}\n".encode())
    return digest.hexdigest()[:32]


# --- remembering environments ---------------------------------------------------------------------

def _record_key(repo_url: str, env_hash: str) -> str:
    return keys.ENVIRONMENT(keys.digest(repo_url), env_hash)


def remember(redis: Any, repo_url: str, env_hash: str, image: str, resolved_ref: str) -> None:
    """A full build made ``image`` from this environment: later content-only commits start from it."""
    key = _record_key(repo_url, env_hash)
    redis.hset(key, mapping={"image": image, "resolved_ref": resolved_ref, "at": str(time.time())})
    redis.expire(key, RECORD_TTL)


def recall(redis: Any, repo_url: str, env_hash: str) -> dict[str, str] | None:
    key = _record_key(repo_url, env_hash)
    found = redis.hgetall(key)
    if found:
        redis.expire(key, RECORD_TTL)
    return found or None


# --- the thin image (tasks/backends/thin_build.py, which build pods run too) ------------------------

def plan_for(decision: Decision, launch: dict[str, Any], repo_url: str, base: dict[str, str],
             push: bool = False) -> dict[str, Any]:
    """What thin_build.py needs to build the thin image, in the worker or in a build pod."""
    return {"repo_url": repo_url, "resolved_ref": launch["resolved_ref"], "image": launch["image"],
            "base_image": base["image"], "base_ref": base["resolved_ref"], "kind": decision.kind,
            "env_hash": decision.env_hash, "start_script": decision.start_script, "push": push}



def plan_reuse(config: dict[str, Any], redis: Any, launch: dict[str, Any], root: Path,
               image_exists: Callable[[str], bool]) -> tuple[Decision, dict[str, str] | None, str]:
    """(decision, earlier image to start from or None, what to log) for a checked-out commit."""
    decision = decide(root, allow_postbuild=config["content_reuse_allow_postbuild"])
    if not decision.reusable:
        return decision, None, f"Full build: {decision.full_reason}.\n"
    base = recall(redis, launch["repo_url"], decision.env_hash)
    if base is None:
        return decision, None, f"Full build: environment {decision.env_hash[:12]} not built before.\n"
    if base["image"] == launch["image"]:
        return decision, None, "Full build: this commit's image made the environment.\n"
    if not image_exists(base["image"]):
        return decision, None, f"Full build: the image of commit {base['resolved_ref'][:12]} is gone.\n"
    return decision, base, f"environment unchanged since {base['resolved_ref']}: reused\n"


@contextlib.contextmanager
def _checkout(config: dict[str, Any], repo_url: str, ref: str, git_env: dict[str, str],
              emit: Emit) -> Iterator[Path | None]:
    """A temporary clone at ``ref`` to decide on reuse; None (said in the log) when it cannot be read."""
    with tempfile.TemporaryDirectory(prefix="bindery-env-") as tmp:
        root = Path(tmp) / "repo"
        try:
            thin_build.checkout(repo_url, ref, root, {**os.environ, "GIT_TERMINAL_PROMPT": "0", **git_env},
                                timeout=min(600, config["build_timeout"]))
        except (subprocess.SubprocessError, OSError) as exc:
            emit({"phase": "building", "message": f"Full build: the repository could not be read for content "
                                                  f"reuse ({type(exc).__name__}).\n"})
            yield None
            return
        yield root


def try_reuse(config: dict[str, Any], redis: Any, client: Any, repo_url: str, git_env: dict[str, str],
              launch: dict[str, Any], emit: Emit, build_client: Any = None) -> tuple[bool, Decision | None]:
    """(built, decision): True when a thin image was built; the decision lets a full build be remembered.

    Any trouble here (clone, engine) means a full build, said in the log: reuse is a shortcut,
    never a reason for a build to fail.
    """
    if not config["content_reuse"]:
        return False, None
    if launch.get("provider") not in GIT_PROVIDERS or not launch.get("resolved_ref"):
        if launch.get("provider"):
            emit({"phase": "building", "message": "Full build: content reuse needs a git repository.\n"})
        return False, None
    with _checkout(config, repo_url, launch["resolved_ref"], git_env, emit) as root:
        if root is None:
            return False, None
        decision, base, message = plan_reuse(config, redis, launch, root, lambda image: _image_exists(client, image))
        if base is not None and not thin_build.content_dir(client.api.inspect_image(base["image"])["Config"],
                                                           decision.kind):
            base, message = None, "Full build: the earlier image has no working directory for the content.\n"
        emit({"phase": "building", "message": message})
        if base is None:
            return False, decision
        try:
            thin_build.build(client, root, plan_for(decision, launch, repo_url, base), emit, build_client)
        except Exception as exc:  # noqa: BLE001 - fall back to the full build, which says what is wrong
            emit({"phase": "building", "message": f"Full build: the thin image failed ({exc}).\n"})
            return False, decision
    return True, decision


def pod_plan(config: dict[str, Any], redis: Any, image_exists: Callable[[str], bool], repo_url: str,
             git_env: dict[str, str], launch: dict[str, Any], emit: Emit
             ) -> tuple[dict[str, Any] | None, Decision | None]:
    """For build pods: (what the thin-image pod runs, or None for a full build; the decision).

    The worker clones to decide (a build pod cannot report back what it found); the pod clones
    again to build.
    """
    if not config["content_reuse"] or launch.get("provider") not in GIT_PROVIDERS:
        return None, None
    with _checkout(config, repo_url, launch["resolved_ref"], git_env, emit) as root:
        if root is None:
            return None, None
        decision, base, message = plan_reuse(config, redis, launch, root, image_exists)
    emit({"phase": "building", "message": message})
    return (plan_for(decision, launch, repo_url, base) if base else None), decision


def _image_exists(client: Any, image: str) -> bool:
    import docker

    try:
        client.api.inspect_image(image)
        return True
    except docker.errors.ImageNotFound:
        return False
