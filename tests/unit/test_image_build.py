"""deploy/image/build.sh and deploy/Dockerfile: the interface the local cluster relies on, one
Dockerfile for both bases (python:3.11-slim with Docker, the Debian base with buildah) and the
uids the chart assumes. Nothing is built here (`--archives` builds nothing and needs no root)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "deploy" / "image" / "build.sh"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
EXAMPLE_DOCKERFILE = ROOT / "deploy" / "examples" / "custom-worker" / "Dockerfile"
CHART = ROOT / "helm" / "pgjobs"

IMAGES = [
    "localhost/pgjobs-base:bookworm",
    "localhost/pgjobs:dev",
    "localhost/pgjobs-postgres:15",
    "localhost/pgjobs-pause:1",
    "localhost/acme-worker:dev",
]


def archives(cache: Path, **env: str) -> list[tuple[str, Path]]:
    environ = {k: v for k, v in os.environ.items() if k != "PGJOBS_IMAGE_TAG"}
    result = subprocess.run(
        ["bash", str(BUILD), "--archives"],
        env={**environ, "PGJOBS_CACHE": str(cache), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    pairs = [line.split(" ") for line in result.stdout.splitlines()]
    assert all(len(pair) == 2 for pair in pairs), result.stdout
    return [(ref, Path(path)) for ref, path in pairs]


def test_archives_names_each_image_and_its_archive_without_building(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    listed = archives(cache)
    assert [ref for ref, _ in listed] == IMAGES
    for _, path in listed:
        assert path.is_absolute()
        assert path.parent == cache / "images"
        assert path.name.endswith(".oci.tar")
    assert len({path for _, path in listed}) == len(listed)
    assert not cache.exists(), "--archives must not create or build anything"


def test_an_extra_tag_adds_one_archive_of_the_app_image(tmp_path: Path) -> None:
    refs = [ref for ref, _ in archives(tmp_path, PGJOBS_IMAGE_TAG="dev2")]
    assert refs == [*IMAGES[:2], "localhost/pgjobs:dev2", *IMAGES[2:]]
    assert [ref for ref, _ in archives(tmp_path, PGJOBS_IMAGE_TAG="dev")] == IMAGES


def run_commands(dockerfile: str) -> list[str]:
    """The commands of every RUN instruction (split at &&, ||, ; and lines), flags dropped."""
    body = re.sub(r"\\\n", "\n", dockerfile)
    runs = re.findall(r"^RUN\s+(.*?)(?=^\S|\Z)", body, flags=re.MULTILINE | re.DOTALL)
    commands = []
    for run in runs:
        for part in re.split(r"&&|\|\||;|\n", run):
            words = [w for w in part.split() if not w.startswith("--mount=")]
            if words:
                commands.append(" ".join(words))
    return commands


def test_the_dockerfile_serves_both_bases() -> None:
    """The Debian base has `python3` and a venv's pip but no `python` or system `pip`;
    build.sh hands its base over through the same ARG that defaults to python:3.11-slim."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, flags=re.MULTILINE)
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert froms and all(image == "${PYTHON_IMAGE}" for image in froms)
    commands = run_commands(text)
    assert any(c.startswith("python3 -m venv") for c in commands)
    system_tools = [c for c in commands if c.split()[0] in {"python", "pip", "pip3"}]
    assert system_tools == []
    script = BUILD.read_text()
    assert "BASE_REF=localhost/pgjobs-base:$SUITE" in script
    assert '--build-arg "PYTHON_IMAGE=$BASE_REF"' in script


def test_image_users_match_the_chart() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    dockerfile = DOCKERFILE.read_text()
    assert f"USER {pod['runAsUser']}:{pod['runAsGroup']}" in dockerfile
    postgresql = (CHART / "templates" / "postgresql.yaml").read_text()
    uid = re.search(r"runAsUser: (\d+)", postgresql)
    gid = re.search(r"runAsGroup: (\d+)", postgresql)
    assert uid and gid
    script = BUILD.read_text()
    assert f"postgres:x:{uid[1]}:{gid[1]}:" in script
    assert f"--user {uid[1]}:{gid[1]}" in script


def test_the_example_worker_image_installs_its_wheel_offline_on_the_pgjobs_image() -> None:
    """deploy/examples/custom-worker: one FROM, the pgjobs image; pip only installs the wheel of
    dist/ (no index, no dependencies); build.sh runs that step without a network."""
    text = EXAMPLE_DOCKERFILE.read_text()
    assert re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE) == ["${PGJOBS_IMAGE}"]
    installs = [c for c in run_commands(text) if " install " in c]
    assert installs and all("--no-index" in c and "--no-deps" in c for c in installs), installs
    assert text.rstrip().endswith("USER 10001:10001"), "the image must end as the pgjobs user"
    script = BUILD.read_text()
    assert "buildah bud --pull=never --network none" in script
    assert '--build-arg "PGJOBS_IMAGE=$APP_REPO:$APP_TAG"' in script
