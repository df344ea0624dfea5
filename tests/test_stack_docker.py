"""The Dockerfile, checked without a Docker engine: its parts run for real where they can."""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, free_port, start_serve

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    found, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
            pending = ""
    return found


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last build stage (what the image runs)."""
    steps = instructions()
    start = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[start:]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form instruction."""
    return json.loads(arguments)


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's exec-form command."""
    (arguments,) = [a for k, a in final_stage() if k == "HEALTHCHECK"]
    return exec_form(arguments[arguments.index("CMD") + 3 :].strip())


def dockerignored(relative: str) -> bool:
    """Whether .dockerignore keeps `relative` out of the build context (last matching rule wins)."""
    ignored = False
    for rule in (ROOT / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = Path(relative).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", "")) for p in prefixes):
            ignored = not negate
    return ignored


def test_slim_python_base_and_non_root_user():
    stages = [a for k, a in instructions() if k == "FROM"]
    assert all(a.split()[0] == "python:3.11-slim" for a in stages), stages
    users = [a for k, a in final_stage() if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}


def test_port_entrypoint_and_command():
    stage = dict(final_stage())
    assert stage["EXPOSE"] == "9916"
    assert exec_form(stage["ENTRYPOINT"]) == ["qualitygate"]
    command = exec_form(stage["CMD"])
    assert command[0] == "serve"
    assert "--config.file=/etc/qualitygate/tracker.yml" in command


def copied_sources() -> list[str]:
    """The repository paths the Dockerfile COPYs into the build stage."""
    copied = []
    for keyword, arguments in instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            copied += shlex.split(arguments)[:-1]
    return copied


def test_build_context_holds_what_copy_needs_and_nothing_else():
    copied = copied_sources()
    assert copied == ["pyproject.toml", "README.md", "exporter"]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
    for private in (".venv", ".git", "tests", "data", "exporter/__pycache__", "bench", "dashboards"):
        assert dockerignored(private), f"{private} would be sent to the Docker build context"


def test_the_package_builds_as_the_image_builds_it(tmp_path):
    """`pip wheel .` on a context holding only what the build stage COPYs."""
    context = tmp_path / "context"
    context.mkdir()
    for source in copied_sources():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / source, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(context)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("qualitygate_exporter-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "exporter/__init__.py" in names and "exporter/cli/main.py" in names
        # The status page's templates and assets are package data: a wheel without them serves no page.
        assert any(n.startswith("exporter/web/templates/") for n in names)
        assert any(n.startswith("exporter/web/assets/") for n in names)
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "qualitygate = exporter.cli:main" in archive.read(entry_points).decode()


def test_image_command_serves_and_healthcheck_sees_it(tmp_path):
    """Run the image's CMD (paths mapped to the repo) and the HEALTHCHECK command against it."""
    command = exec_form(dict(final_stage())["CMD"])
    mapped = {
        "/etc/qualitygate/tracker.yml": str(ROOT / "examples/stack-tracker.yml"),
        "/var/lib/qualitygate": str(tmp_path),
    }
    args = []
    for arg in command[1:]:
        for inside, outside in mapped.items():
            arg = arg.replace(inside, outside)
        args.append(arg)
    config = Path(next(a.split("=", 1)[1] for a in args if a.startswith("--config.file=")))
    extra = [a for a in args if not a.startswith("--config.file=")]
    served = start_serve(config, tmp_path, *extra, ready=True, storage=False)
    try:
        probe = [a.replace(":9916/", f":{served.port}/") for a in healthcheck_command()]
        assert probe[0] == "python" and any("/-/healthy" in a for a in probe)
        healthy = subprocess.run([sys.executable, *probe[1:]], check=False, capture_output=True, text=True, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        served.stop()
    closed = [a.replace(":9916/", f":{free_port()}/") for a in healthcheck_command()]
    unhealthy = subprocess.run([sys.executable, *closed[1:]], check=False, capture_output=True, text=True, timeout=30)
    assert unhealthy.returncode != 0


@pytest.mark.parametrize("flag", ["--config.file", "--storage.path"])
def test_command_flags_are_the_cli_s(flag):
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "serve", "--help"], check=False, capture_output=True, text=True, timeout=60
    )
    assert flag in result.stdout
