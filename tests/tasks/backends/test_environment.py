"""Which files of a repository make its environment (repo2docker 2024.7.0's buildpacks, Dockerfiles),
over real trees in temporary directories, and the thin image's Dockerfile and context."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tasks.backends.environment import CONFIG_FILES, decide
from tasks.backends.thin_build import context_tar, deleted_since, thin_dockerfile


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_every_buildpack_config_file_of_repo2docker_is_environment() -> None:
    spec = importlib.util.find_spec("repo2docker")  # (read, not imported: its import warns)
    assert spec and spec.origin
    source = "".join(path.read_text() for path in (Path(spec.origin).parent / "buildpacks").rglob("*.py"))
    read = set(re.findall(r'binder_path\(\s*"([^"]+)"', source))
    assert read and read <= set(CONFIG_FILES), read - set(CONFIG_FILES)


def test_python_repo_environment_is_requirements_not_notebooks(tmp_path: Path) -> None:
    root = tree(tmp_path, {"requirements.txt": "numpy==1.26\n", "analysis.ipynb": "{}", "data/x.csv": "1"})
    first = decide(root)
    assert first.kind == "buildpack" and first.reusable and first.files == ["requirements.txt"]
    (root / "analysis.ipynb").write_text('{"changed": 1}')
    assert decide(root).env_hash == first.env_hash
    (root / "requirements.txt").write_text("numpy==2.0\n")
    assert decide(root).env_hash != first.env_hash


def test_binder_dir_wins_over_root_files(tmp_path: Path) -> None:
    root = tree(tmp_path, {"binder/environment.yml": "dependencies: [python=3.11]\n", "requirements.txt": "x\n",
                           "setup.py": "from setuptools import setup\n", "binder/apt.txt": "curl\n"})
    decision = decide(root)
    assert decision.reusable  # setup.py is not installed when binder/ exists
    assert decision.files == ["binder/apt.txt", "binder/environment.yml"]
    (root / "requirements.txt").write_text("y\n")  # ignored by repo2docker, so not environment
    assert decide(root).env_hash == decision.env_hash


def test_moving_config_into_binder_changes_the_environment(tmp_path: Path) -> None:
    root = tree(tmp_path, {"requirements.txt": "x\n"})
    before = decide(root).env_hash
    (root / "binder").mkdir()
    (root / "requirements.txt").rename(root / "binder" / "requirements.txt")
    assert decide(root).env_hash != before


@pytest.mark.parametrize(("files", "reason"), [
    ({"requirements.txt": "x\n", "postBuild": "pip install -e .\n"}, "postBuild"),
    ({"setup.py": "from setuptools import setup\n"}, "setup.py"),
    ({"DESCRIPTION": "Package: x\n"}, "DESCRIPTION"),
    ({"requirements.txt": "-e .\n"}, "requirements.txt installs"),
    ({"requirements.txt": "-r more.txt\n", "more.txt": "x\n"}, "includes"),
    ({"environment.yml": "dependencies:\n  - pip:\n    - -e .\n"}, "environment.yml"),
    ({"Pipfile": '[packages]\nmine = {path = "."}\n'}, "Pipfile"),
    ({"Project.toml": 'name = "X"\nuuid = "1234"\n'}, "Julia package"),
    ({"default.nix": "import ./shell.nix\n"}, "default.nix"),
    ({"binder/requirements.txt": "x\n", ".binder/apt.txt": "y\n"}, "both binder/ and .binder/"),
])
def test_content_dependent_environments_need_a_full_build(tmp_path: Path, files: dict[str, str],
                                                           reason: str) -> None:
    decision = decide(tree(tmp_path, files))
    assert not decision.reusable and reason in (decision.full_reason or "")


def test_postbuild_is_allowed_by_the_operator(tmp_path: Path) -> None:
    root = tree(tmp_path, {"requirements.txt": "x\n", "postBuild": "echo hi\n", "start": "exec \"$@\"\n"})
    decision = decide(root, allow_postbuild=True)
    assert decision.reusable and decision.files == ["postBuild", "requirements.txt", "start"]
    assert decision.start_script == "start"


def test_dockerfile_environment_is_the_dockerfile_and_what_it_copies(tmp_path: Path) -> None:
    root = tree(tmp_path, {
        "Dockerfile": "FROM base\nCOPY requirements.txt /tmp/\nCOPY --chown=1000 conf/ \\\n  /etc/conf/\n"
                      "COPY --from=builder /out /out\nADD [\"extra.txt\", \"/opt/\"]\nRUN pip install -r /tmp/r\n",
        "requirements.txt": "x\n", "conf/a.ini": "a", "conf/sub/b.ini": "b", "extra.txt": "e",
        "analysis.ipynb": "{}"})
    decision = decide(root)
    assert decision.kind == "dockerfile" and decision.reusable
    assert decision.files == ["Dockerfile", "conf/a.ini", "conf/sub/b.ini", "extra.txt", "requirements.txt"]
    before = decision.env_hash
    (root / "analysis.ipynb").write_text('{"new": 1}')
    assert decide(root).env_hash == before
    (root / "conf/sub/b.ini").write_text("changed")
    assert decide(root).env_hash != before


@pytest.mark.parametrize("line", ["COPY . /home/jovyan/", "COPY ./ /srv", "ADD . /x", "COPY * /x/",
                                  "COPY $SRC /x", "ADD https://example.org/f /x", "COPY ../up /x"])
def test_dockerfiles_copying_the_whole_context_or_unknown_files_need_a_full_build(tmp_path: Path,
                                                                                   line: str) -> None:
    decision = decide(tree(tmp_path, {"Dockerfile": f"FROM base\n{line}\n", "a.txt": "a"}))
    assert decision.kind == "dockerfile" and not decision.reusable, line


def test_thin_dockerfile_copies_content_like_repo2docker() -> None:
    plan = {"kind": "buildpack", "env_hash": "e" * 32, "start_script": "start", "base_image": "reg/img:old",
            "resolved_ref": "b" * 40, "base_ref": "a" * 40}
    image = {"User": "jovyan", "WorkingDir": "/home/jovyan",
             "Env": ["PATH=/bin", "REPO_DIR=/home/jovyan", "NB_USER=jovyan"]}
    text = thin_dockerfile(plan, image, ["gone.ipynb", "it's.txt"])
    assert text.splitlines() == [
        "FROM reg/img:old", "USER root", "RUN cd /home/jovyan && rm -rf -- gone.ipynb 'it'\"'\"'s.txt'",
        "COPY --chown=jovyan:jovyan src/ /home/jovyan/", "USER jovyan", "RUN chmod +x start",
        f'LABEL repo2docker.ref="{"b" * 40}"', f'LABEL org.bindery.environment="{"e" * 32}"',
        f'LABEL org.bindery.reused-from="{"a" * 40}"']


def test_thin_dockerfile_of_a_dockerfile_image_uses_its_workdir() -> None:
    plan = {"kind": "dockerfile", "env_hash": "e" * 32, "base_image": "img:old", "resolved_ref": "b",
            "base_ref": "a"}
    text = thin_dockerfile(plan, {"User": "", "WorkingDir": "/srv/app", "Env": []}, [])
    assert text.splitlines()[:2] == ["FROM img:old", "COPY src/ /srv/app/"]
    with pytest.raises(ValueError, match="no working directory"):
        thin_dockerfile({**plan, "kind": "buildpack"}, {"User": "", "WorkingDir": "/srv/app", "Env": []}, [])


def test_context_keeps_git_and_applies_dockerignore(tmp_path: Path) -> None:
    root = tree(tmp_path, {"a.ipynb": "{}", "secret.env": "x", ".dockerignore": "secret.env\n", "d/b.txt": "b"})
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    with tarfile.open(fileobj=context_tar(root, "FROM x\n")) as tar:
        names = tar.getnames()
        assert {tar.getmember(n).uid for n in names if n.startswith("src")} == {1000}
    assert "Dockerfile" in names and "src/a.ipynb" in names and "src/d/b.txt" in names
    assert "src/secret.env" not in names and any(n.startswith("src/.git/") for n in names)


def test_deleted_since_lists_files_the_base_commit_had(tmp_path: Path) -> None:
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    tree(tmp_path, {"keep.ipynb": "1", "gone.ipynb": "2"})
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    base = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "gone.ipynb").unlink()
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert deleted_since(tmp_path, base, head) == ["gone.ipynb"]
    assert deleted_since(tmp_path, "f" * 40, head) is None


def test_the_build_pods_script_speaks_the_apps_engine_api_version() -> None:
    """thin_build.py runs alone in build pods, so it keeps its own copy of the version."""
    from app.extensions import ENGINE_API_VERSION
    from tasks.backends import thin_build

    assert thin_build.ENGINE_API_VERSION == ENGINE_API_VERSION
