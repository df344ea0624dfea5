"""The status page's filters (`?tier=critical&status=fail,error`) and the links that set them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from exporter.config.model import TIERS
from exporter.model import STATUSES


class Query(Protocol):
    """A multi-valued query string (aiohttp's request.query is one)."""

    def getall(self, key: str, default: list[str]) -> list[str]:
        """Every value of `key`, or `default`."""
        ...


class BadRequest(ValueError):
    """A query parameter outside its known words; the message never repeats the value."""


@dataclass(frozen=True)
class Filters:
    """Which gates to show: by tier and by status (empty means all)."""

    tiers: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return bool(self.tiers or self.statuses)

    def matches(self, tier: str, status: str) -> bool:
        """Whether a gate with this tier and status is shown."""
        return (not self.tiers or tier in self.tiers) and (not self.statuses or status in self.statuses)

    def describe(self) -> str:
        """`tier critical, status fail or error`, for headings."""
        parts = []
        if self.tiers:
            parts.append("tier " + " or ".join(t for t in TIERS if t in self.tiers))
        if self.statuses:
            parts.append("status " + " or ".join(s for s in STATUSES if s in self.statuses))
        return ", ".join(parts)


def parse_filters(query: Query) -> Filters:
    """Read `tier` and `status` (repeated or comma-separated); BadRequest on an unknown word."""
    return Filters(frozenset(_words(query, "tier", TIERS)), frozenset(_words(query, "status", STATUSES)))


def _words(query: Query, name: str, allowed: tuple[str, ...]) -> list[str]:
    out = []
    for raw in query.getall(name, []):
        for word in raw.split(","):
            word = word.strip()
            if not word:
                continue
            if word not in allowed:
                raise BadRequest(f"unknown {name}: use one of {', '.join(allowed)}")
            out.append(word)
    return out


def url(path: str, params: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> str:
    """A same-origin URL with a properly encoded query string."""
    query = urlencode(list(params.items()) if isinstance(params, Mapping) else list(params))
    return f"{path}?{query}" if query else path


def filter_links(filters: Filters, keep: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    """For each filter group, links to `all` and each word; the other group's choice is kept."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, words, chosen, other_name, other in (("tier", TIERS, filters.tiers, "status", filters.statuses),
                                                    ("status", STATUSES, filters.statuses, "tier", filters.tiers)):
        base = list(keep.items()) + [(other_name, w) for w in (STATUSES if other_name == "status" else TIERS)
                                     if w in other]
        links = [{"label": "all", "href": url("/", base), "current": not chosen}]
        for w in words:
            links.append({"label": w, "href": url("/", [*base, (name, w)]), "current": chosen == {w}})
        groups[name] = links
    return groups
