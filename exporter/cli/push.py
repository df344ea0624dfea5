"""`qualitygate push GATE FILE`: send one CI report to a running exporter and print its judgement.

Exit 0 when the pushed report passes the gate, 1 when it does not, 2 on usage, network or credential
errors (never a traceback). Unset flags come from QUALITYGATE_URL / QUALITYGATE_TOKEN_FILE /
QUALITYGATE_TOKEN and from the CI's own variables, so one line in a GitHub Actions or GitLab CI job
is enough: `qualitygate push unit-coverage coverage.xml`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.cli.common import json_object
from exporter.config import units
from exporter.config.expect import Condition, parse_condition

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
# config.model.ID_RE, kept here: config.model loads every probe kind, which a CI client has no use for.
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
MAX_REPORT_BYTES = 32 * 1024 * 1024  # the exporter's default --web.max-evidence-bytes
# Counts a judgement shows beside its sentences when no condition names them.
_COUNTS = ("tests", "failures", "errors", "warnings")


class PushError(Exception):
    """A push that could not be made or was refused: one line for stderr, exit 2."""


@dataclass(frozen=True)
class RunInfo:
    """Where the report was made: commit, branch, run link and run id."""

    commit: str | None
    branch: str | None
    run_url: str | None
    run_id: str | None


def ci_run_info(env: Mapping[str, str]) -> RunInfo:
    """Commit, branch, run URL and run id from GitHub Actions' or GitLab CI's own variables."""
    if env.get("GITHUB_ACTIONS") == "true" or "GITHUB_SHA" in env:
        run_url = None
        if env.get("GITHUB_SERVER_URL") and env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
            run_url = f"{env['GITHUB_SERVER_URL']}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        # A pull request's GITHUB_REF_NAME is "42/merge"; its source branch is GITHUB_HEAD_REF.
        branch = env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME")
        return RunInfo(env.get("GITHUB_SHA"), branch, run_url, env.get("GITHUB_RUN_ID"))
    if env.get("GITLAB_CI") == "true" or "CI_COMMIT_SHA" in env:
        branch = env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME") or env.get("CI_COMMIT_REF_NAME")
        return RunInfo(env.get("CI_COMMIT_SHA"), branch, env.get("CI_PIPELINE_URL"), env.get("CI_PIPELINE_ID"))
    return RunInfo(None, None, None, None)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `push` subcommand's flags."""
    p.add_argument("gate", metavar="GATE", help="id of a gate whose source is push")
    p.add_argument("file", metavar="FILE",
                   help="the report (coverage XML/JSON/lcov, JUnit XML, JSON, SARIF); - for stdin")
    p.add_argument("--url", default=None, metavar="URL", help="the exporter (default: $QUALITYGATE_URL)")
    p.add_argument("--tracker", default=None, metavar="NAME", help="the gate's tracker, when several are loaded")
    p.add_argument("--token-file", dest="token_file", default=None, metavar="F",
                   help="a push token of the tracker's push_tokens_file (default: $QUALITYGATE_TOKEN_FILE, "
                        "else $QUALITYGATE_TOKEN)")
    p.add_argument("--commit", default=None, metavar="SHA", help="default: GITHUB_SHA / CI_COMMIT_SHA")
    p.add_argument("--branch", default=None, metavar="B", help="default: GITHUB_HEAD_REF or GITHUB_REF_NAME / "
                                                                "CI_COMMIT_REF_NAME")
    p.add_argument("--run-url", dest="run_url", default=None, metavar="URL",
                   help="default: the GitHub Actions run / CI_PIPELINE_URL")
    p.add_argument("--run-id", dest="run_id", default=None, metavar="ID",
                   help="pushes with one run id are one run (junit sums them); default: GITHUB_RUN_ID / CI_PIPELINE_ID")
    p.add_argument("--tls.ca-file", dest="ca_file", default=None, metavar="FILE",
                   help="CA bundle to verify an https --url (default: the system's)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="HTTP timeout (default 30)")


def run(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Push the report; print the judgement; 0 pass, 1 not pass, 2 could not push."""
    env = os.environ if env is None else env
    try:
        doc = _push(args, env)
    except PushError as exc:
        print(f"qualitygate push: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(describe(args.gate, doc))
    return EXIT_PASS if doc.get("status") == "pass" else EXIT_FAIL


def _conditions(expect: Sequence[str]) -> list[Condition]:
    out = []
    for text in expect:
        try:
            out.append(parse_condition(text))
        except ValueError:
            continue  # an exporter newer than this client: its condition is still in `message`
    return out


def _shown_as(name: str, kind: str) -> str:
    """time | ratio | bytes | count | number for a measurement of a judgement (units.measurement_kind, no Gate)."""
    if name in ("value", "delta"):
        return units.kind_of_value(kind)
    if name in units.TIME_MEASUREMENTS:
        return "time"
    if name == "size":
        return "bytes"
    return "count" if name in units.COUNT_MEASUREMENTS else "number"


def human(name: str, value: float, expect: Sequence[str], kind: str = "") -> str:
    """A measurement in the unit its expect condition is written in (`85 %`, `350 ms`): the one formatter."""
    cond = next((c for c in _conditions(expect) if c.measurement == name), None)
    mkind = _shown_as(name, kind)
    shown = units.pair(mkind, cond, value)[0] if cond is not None else \
        units.show(value, units.display_unit(mkind, None, value))
    return f"+{shown}" if name == "delta" and value > 0 else shown


def describe(gate: str, doc: Mapping[str, Any]) -> str:
    """The judgement: status, gate, each condition in the formatter's words (`coverage 88 % is at least 85 %`)."""
    status = str(doc.get("status", "?"))
    expect = [str(e) for e in doc.get("expect") or [] if isinstance(e, str)]
    kind = str(doc.get("kind") or "")
    got = doc.get("measurements")
    values = {str(k): float(v) for k, v in (got.items() if isinstance(got, Mapping) else ())
              if isinstance(v, int | float) and not isinstance(v, bool)}
    conditions = _conditions(expect)
    said = [units.sentence(kind, c, values[c.measurement]) for c in conditions if c.measurement in values]
    named = {c.measurement for c in conditions}
    said += [f"{units.name_of(kind, k)} {human(k, values[k], expect, kind)}" for k in ("value", *_COUNTS)
             if k in values and k not in named]
    line = f"{status.upper()} {doc.get('tracker', '')}/{gate}".replace(" /", " ")
    if said:
        line += ": " + "; ".join(said)
    unmeasured = [c.text for c in conditions if c.measurement not in values and c.measurement != "delta"]
    if unmeasured:
        line += f" (not measured: {' and '.join(unmeasured)})"
    if any(c.measurement == "delta" for c in conditions) and "delta" not in values:
        line += " (no earlier push to compare with: delta holds)"
    message = str(doc.get("message") or "")
    if message and message not in said:  # a failure's message is its sentence: said once
        line += f"\n  {message}"
    if doc.get("counts"):
        line += "\n  recorded: this push decides the gate"
    else:
        line += "\n  not recorded: " + str(doc.get("why_not_counted") or "this push does not decide the gate")
    if doc.get("note"):
        line += f"\n  {doc['note']}"
    return line


def _token(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    path = args.token_file or env.get("QUALITYGATE_TOKEN_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read(64 * 1024).splitlines()
        except OSError as exc:
            raise PushError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise PushError(f"the token file {path} is not UTF-8") from None
        # The first token of the file: a copy of the exporter's push_tokens_file works too.
        token = next((t.strip() for t in lines if t.strip() and not t.strip().startswith("#")), "")
    else:
        token = env.get("QUALITYGATE_TOKEN", "").strip()
    if not token:
        raise PushError("no push token: --token-file F, $QUALITYGATE_TOKEN_FILE or $QUALITYGATE_TOKEN")
    if any(c.isspace() for c in token) or not token.isprintable():
        raise PushError("the push token holds whitespace or control characters: one token, on one line")
    return token


def _report(path: str) -> bytes:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_REPORT_BYTES + 1)
        else:
            if not os.path.isfile(path):
                raise PushError(f"{path}: not a regular file")
            with open(path, "rb") as fh:
                data = fh.read(MAX_REPORT_BYTES + 1)
    except OSError as exc:
        raise PushError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_REPORT_BYTES:
        raise PushError(f"{path}: larger than {MAX_REPORT_BYTES // (1024 * 1024)} MiB")
    return data


def _push(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, Any]:
    import requests

    if not _ID.match(args.gate):
        raise PushError(f"invalid gate id {args.gate!r}")
    base = (args.url or env.get("QUALITYGATE_URL") or "").rstrip("/")
    if not base:
        raise PushError("say where the exporter is: --url URL or $QUALITYGATE_URL")
    if not base.startswith(("http://", "https://")):
        raise PushError(f"--url must start with http:// or https:// (got {base!r})")
    if args.timeout <= 0:
        raise PushError(f"--timeout must be positive (got {args.timeout:g})")
    token = _token(args, env)
    body = _report(args.file)
    ci = ci_run_info(env)
    params = {k: v for k, v in (("tracker", args.tracker), ("commit", args.commit or ci.commit),
                                ("branch", args.branch or ci.branch), ("run_url", args.run_url or ci.run_url),
                                ("run_id", args.run_id or ci.run_id)) if v}
    try:
        resp = requests.post(f"{base}/api/gates/{args.gate}/evidence", data=body, params=params,
                             headers={"Authorization": f"Bearer {token}",
                                      "Content-Type": "application/octet-stream"},
                             timeout=args.timeout, verify=args.ca_file or True, allow_redirects=False)
    except requests.exceptions.SSLError:
        raise PushError(f"TLS to {base} failed: the certificate does not verify (--tls.ca-file FILE)") from None
    except requests.exceptions.Timeout:
        raise PushError(f"{base} did not answer within {args.timeout:g}s") from None
    except requests.exceptions.ConnectionError as exc:
        why = "connection refused" if "refused" in str(exc).lower() else "connection failed"
        if len(body) > 1 << 20 and "refused" not in str(exc).lower():
            why += " while sending (larger than the exporter's --web.max-evidence-bytes?)"
        raise PushError(f"cannot reach {base}: {why}") from None
    except requests.RequestException as exc:
        raise PushError(f"cannot reach {base}: {type(exc).__name__}") from None
    doc = json_object(resp)
    if resp.status_code == 202:
        return doc
    reason = " ".join(str(doc.get("error") or resp.text[:300] or resp.reason).split())
    if resp.status_code == 401:
        raise PushError(f"the exporter refused the push token (401): {reason}")
    raise PushError(f"refused ({resp.status_code}): {reason}")
