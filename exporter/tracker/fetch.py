"""`qualitygate render --from URL`: read the status document from a running exporter."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests

STATUS_PATH = "/api/progress/status"


class FetchError(Exception):
    """The exporter could not be read: a one-line reason for the user."""


def status_url(base: str, tracker: str | None = None) -> str:
    """`http://host:9916` (or the full status URL) -> the status URL, with ?tracker= when given."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FetchError(f"--from needs an http(s) URL of an exporter, got {base!r}")
    path = parts.path.rstrip("/")
    url = f"{parts.scheme}://{parts.netloc}{path if path.endswith(STATUS_PATH) else path + STATUS_PATH}"
    return url + ("?" + urlencode({"tracker": tracker}) if tracker else "")


def fetch_status(base: str, tracker: str | None = None, timeout: float = 10.0,
                 session: requests.Session | None = None) -> dict[str, Any]:
    """The status document of one tracker, or {"trackers": [doc, ...]} when the exporter serves several."""
    http = session or requests.Session()
    url = status_url(base, tracker)
    doc = _get(http, url, timeout)
    if "gates" not in doc and isinstance(doc.get("trackers"), list):
        # The exporter serves several trackers and answered with their index: read each one.
        return {"trackers": [_get(http, urljoin(url, str(t.get("url") or "")), timeout) for t in doc["trackers"]]}
    return doc


def _get(http: requests.Session, url: str, timeout: float) -> dict[str, Any]:
    try:
        resp = http.get(url, timeout=timeout, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise FetchError(f"cannot read {url}: {exc.__class__.__name__}: {exc}") from None
    if resp.status_code != 200:
        raise FetchError(f"{url} answered {resp.status_code}: {resp.text.strip()[:200]}")
    try:
        doc = resp.json()
    except ValueError:
        raise FetchError(f"{url} did not answer JSON") from None
    if not isinstance(doc, dict) or not ("gates" in doc or isinstance(doc.get("trackers"), list)):
        raise FetchError(f"{url} did not answer a progress status document")
    return doc
