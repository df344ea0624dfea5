"""Helpers for the rules-bundle tests: the shipped rule files, a local webhook receiver, test configs."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from conftest import ROOT, wait_for
from stack_support import RULES, SHIPPED_ALERTMANAGER

RULE_FILES = sorted(RULES.glob("*.yml"))
RULE_TESTS = sorted((RULES / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
# Series Prometheus makes itself for every scrape target.
PROMETHEUS_METRICS = {"up"}

_PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                 "offset", "inf", "nan"}


def rules(kind: str | None = None) -> list[dict[str, Any]]:
    """Every rule of the shipped rule files (optionally only "alert" or "record" rules), with its group."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if kind is None or kind in rule:
                    found.append({**rule, "_group": group["name"], "_file": path.name})
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small tokenizer: enough for this bundle)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.groups()
        if not call and name.lower() not in _PROMQL_WORDS:
            names.add(name)
    return names


def template_metric_names(template: str) -> set[str]:
    """The metric names an annotation template looks up with `printf "metric{...}" ... | query`."""
    return set(re.findall(r'printf\s+"([A-Za-z_:][\w:]*)\{', template))


def github_anchors(markdown: str) -> set[str]:
    """The heading anchors GitHub generates for a markdown document (duplicates get -1, -2 ...)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_fence or not heading:
            continue
        text = re.sub(r"`([^`]*)`", r"\1", heading.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


@dataclass
class WebhookReceiver:
    """An Alertmanager webhook receiver on 127.0.0.1: keeps every notification, by URL path."""

    server: ThreadingHTTPServer
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def alerts(self, path: str) -> list[dict[str, Any]]:
        """Every alert delivered to `path` so far, in arrival order."""
        with self.lock:
            return [alert for p, body in self.received if p == path for alert in body.get("alerts", [])]

    def wait_for_alert(self, path: str, timeout: float = 60.0, **labels: str) -> dict[str, Any]:
        """The first alert delivered to `path` whose labels include `labels`; fails after `timeout`."""
        def find() -> dict[str, Any] | None:
            return next((a for a in self.alerts(path) if labels.items() <= a["labels"].items()), None)
        return wait_for(find, timeout=timeout, interval=0.2, what=f"an alert {labels} at {path}")

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()


def start_webhook_receiver() -> WebhookReceiver:
    """Serve a WebhookReceiver on a free loopback port, in a daemon thread."""
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with receiver.lock:
                receiver.received.append((self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
            pass

    receiver = WebhookReceiver(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    return receiver


def alertmanager_test_config(webhook_url: str, path: Path) -> Path:
    """The shipped Alertmanager config with its placeholder webhooks pointed at `webhook_url` and fast timers.

    Routing and inhibition stay exactly as shipped: only receiver URLs and group timers change.
    """
    config = yaml.safe_load(SHIPPED_ALERTMANAGER.read_text(encoding="utf-8"))
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = webhook_url + "/" + receiver["name"]

    def speed_up(route: dict[str, Any]) -> None:
        for key, value in (("group_wait", "1s"), ("group_interval", "1s"), ("repeat_interval", "1m")):
            if key in route or route is config["route"]:
                route[key] = value
        for child in route.get("routes", []):
            speed_up(child)

    speed_up(config["route"])
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def shortened_rules(directory: Path) -> list[Path]:
    """Copies of the shipped rule files with every `for` set to 1s (alerts fire within a test); nothing else changed."""
    directory.mkdir()
    copies = []
    for path in RULE_FILES:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in spec["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "1s"
        copy = directory / path.name
        copy.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        copies.append(copy)
    return copies
