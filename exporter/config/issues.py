"""Config errors: each issue names its file, line and key; one ConfigError carries them all."""

from __future__ import annotations

from dataclasses import dataclass


def brief(text: str, limit: int = 40) -> str:
    """A value for a message, shortened: a 100,000-character id need not be printed whole."""
    return repr(text) if len(text) <= limit else repr(text[:limit - 3] + "...")


@dataclass(frozen=True)
class Issue:
    """One config error: where, which key, what is wrong."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """A config that cannot be used; carries every issue found, each with FILE:LINE and key."""

    def __init__(self, issues: list[Issue]):
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.key, i.message))
        super().__init__("\n".join(str(i) for i in self.issues))
