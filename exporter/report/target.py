"""What a gate's probe looks at, for people: a URL, an address, a path, a query; never a secret.

Headers, passwords, tokens, environment variables, request bodies and command arguments are left
out: any of them may carry a credential, and the page and the API are read by people who hold none.
A URL loses its userinfo and its query string (signed links carry tokens there), as in messages.
"""

from __future__ import annotations

from typing import Any

from exporter.config.durations import format_duration
from exporter.probes.files import display_path
from exporter.probes.sources import shown_url


def probe_target(kind: str, spec: Any, base_dir: str | None = None) -> dict[str, str]:
    """The target of one probe as short named strings (empty for kinds that look at nothing outside)."""
    out: dict[str, str] = {}
    url = getattr(spec, "url", None)
    if isinstance(url, str) and url:
        out["url"] = shown_url(url)
        method = getattr(spec, "method", None)
        if isinstance(method, str) and method != "GET":
            out["method"] = method
    for key in ("address", "server_name", "json_path", "level", "format", "metric"):
        value = getattr(spec, key, None)
        if isinstance(value, str) and value:
            out[key] = value
    path = getattr(spec, "path", None)
    if isinstance(path, str) and path:
        out["path"] = display_path(path, base_dir)
    query = getattr(spec, "query", None)
    if kind == "promql" and isinstance(query, str):
        out["query"] = query
    push = getattr(spec, "push", None)
    if push is not None:
        out["push"] = (f"branch {push.branch}, " if push.branch else "any branch, ") + \
            f"max_age {_span(push.max_age)}"
    if kind == "uptime":
        out["gate"] = str(spec.gate)
        if spec.window is not None:
            out["window"] = _span(spec.window)
    if kind == "manual":
        out["max_age"] = _span(spec.max_age)
    if kind == "command":
        # The program only: arguments and shell lines may hold a token (curl -H "Authorization: ...").
        argv = getattr(spec, "argv", None)
        out["command"] = str(argv[0]) if argv else "shell command"
    return out


def _span(seconds: float) -> str:
    """`30d`, `12h`, else Prometheus syntax (format_duration writes 30d as 4w2d)."""
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return format_duration(seconds)


def target_text(kind: str, target: dict[str, str]) -> str:
    """One line for the gate page: `GET https://ci.example/health`, `db:5432`, `coverage.xml`."""
    parts: list[str] = []
    if "url" in target:
        parts.append(f"{target.get('method', 'GET')} {target['url']}" if kind == "http" else target["url"])
    for key in ("address", "path", "command"):
        if key in target:
            parts.append(target[key])
    if "query" in target:
        parts.append(f"query {target['query']}")
    if "push" in target:
        parts.append(f"pushed by CI ({target['push']})")
    if "gate" in target:
        parts.append(f"uptime of {target['gate']}" + (f" over {target['window']}" if "window" in target else ""))
    if "max_age" in target:
        parts.append(f"an attestation, valid {target['max_age']}")
    if "server_name" in target:
        parts.append(f"server name {target['server_name']}")
    if "json_path" in target:
        parts.append(f"at {target['json_path']}")
    return ", ".join(parts)
