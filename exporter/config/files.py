"""Config files as `serve`, `check` and the rest name them: files and folders -> one Config per tracker file.

Here, not in the engine, so that serve's config-loading child (config/apart.py) imports only the config stage.
"""

from __future__ import annotations

import functools
import hashlib
import os

from exporter.config.issues import ConfigError, Issue
from exporter.config.model import Config, load_config


def config_files(paths: list[str]) -> list[str]:
    """Expand --config.file arguments: a directory stands for every *.yml / *.yaml in it, sorted."""
    out: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            out += sorted(os.path.join(path, n) for n in os.listdir(path)
                          if n.endswith((".yml", ".yaml")) and not n.startswith("."))
        else:
            out.append(path)
    return out


def load_configs(paths: list[str]) -> list[Config]:
    """Load every config file (one tracker each); raise one ConfigError with all issues of all files."""
    configs, issues = [], []
    seen: dict[str, Config] = {}
    files = config_files(paths)
    if not files:
        raise ConfigError([Issue(paths[0] if paths else "<none>", 1, "", "no *.yml or *.yaml config files found")])
    for path in files:
        try:
            config = load_config(path)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        first = seen.get(config.tracker)
        if first is not None:
            also = f"{first.source}:{first.tracker_line}"
            issues.append(Issue(path, config.tracker_line, "tracker",
                                f"duplicate tracker name {config.tracker!r} (also in {also})"))
            continue
        seen[config.tracker] = config
        configs.append(config)
    if issues:
        raise ConfigError(issues)
    return configs


@functools.cache
def code_fingerprint() -> str:
    """A hash of this package's sources as they are on disk when first asked (serve asks at start-up).

    A reload's fresh process (config/apart.py) imports the code on disk now: after an upgrade it would
    be another version than the server's, and a pickled dataclass of another version lands in the
    server's classes field by position, silently wrong. It compares fingerprints and declines.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    for folder, dirs, names in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(n for n in names if n.endswith(".py")):
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()
