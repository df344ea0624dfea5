"""The overview's "Evidence" row: gates judged on evidence from outside (manual attestations, CI pushes).

Only such gates export gate_awaiting_evidence and the gate_evidence_* times (exporter/exposition/gates.py):
manual gates are gate_info{kind="manual"}, push-sourced gates are the other gates that export
gate_awaiting_evidence, every other gate is measured by its own probe.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import common, dashboard, stat, table
from grafana_foundation_sdk.models import common as common_model

from qgdash.common import (
    GATES,
    MERGE,
    STATUS_MAPPINGS,
    count_stat,
    override,
    panel,
    query,
    rename,
    stat_panel,
    status_expr,
    value_mappings,
)
from qgdash.units import GATE_LABELS

WEEK = "7 * 86400"
AWAITING = f"gate_awaiting_evidence{{{GATES}}}"
EXPIRY = f"gate_evidence_expiry_timestamp_seconds{{{GATES}}}"
EVIDENCE_AT = f"gate_evidence_timestamp_seconds{{{GATES}}}"

AWAITING_COUNT = f"sum by (tracker) ({AWAITING}) or on () vector(0)"
# Evidence that lapses within a week and has not lapsed yet (lapsed evidence already fails its gate).
EXPIRING_COUNT = f"count by (tracker) (({EXPIRY} - time()) < {WEEK} > 0) or on () vector(0)"
OLDEST_EVIDENCE = f"max by (tracker) (time() - {EVIDENCE_AT})"

# Where a gate's verdict comes from, as instant-vector selectors of gate_info (one series per gate).
SOURCES = {
    "manual": f'gate_info{{{GATES}, kind="manual"}}',
    "pushed": f'(gate_info{{{GATES}, kind!="manual"}} and on (tracker, gate) {AWAITING})',
    "probed": f'(gate_info{{{GATES}, kind!="manual"}} unless on (tracker, gate) {AWAITING})',
}


def per_source(count: Callable[[str], str]) -> str:
    """One series per evidence source (label `source`): `count` of each source's gate_info selector."""
    parts = [f'label_replace({count(gates)}, "source", "{source}", "", "")' for source, gates in SOURCES.items()]
    return " or ".join(parts)


def _count_where(condition: str) -> Callable[[str], str]:
    """Count the gates of a source that meet `condition`; 0 (not nothing) when the source has gates but none do."""
    return lambda gates: f"(count({gates} and on (tracker, gate) {condition}) or 0 * count({gates}))"


SOURCE_GATES = per_source(lambda gates: f"count({gates})")
SOURCE_PASSING = per_source(_count_where(f"gate_passed{{{GATES}}} == 1"))
SOURCE_AWAITING = per_source(_count_where(f"{AWAITING} == 1"))

# "Lapses in": red once lapsed, orange within the week the "expiring" stat counts, green after.
LAPSE_THRESHOLDS = {
    "mode": "absolute",
    "steps": [{"color": "red", "value": None}, {"color": "orange", "value": 0}, {"color": "green", "value": 7 * 86400}],
}
AWAITING_MAPPINGS = value_mappings({0: ("evidenced", "green"), 1: ("AWAITING", "blue")})


def row() -> dashboard.Row:
    """The row's header; its panels follow it on the grid (an open row holds no panels of its own)."""
    return dashboard.Row("Evidence").id(9)


def panels() -> list[object]:
    """The row's panels, left to right and top to bottom."""
    return [_awaiting(), _expiring(), _oldest(), _sources(), _per_gate()]


def _awaiting() -> stat.Panel:
    return count_stat(
        10,
        "Awaiting evidence",
        "Manual and push-sourced gates that have never had accepted evidence (no attestation, no push yet). "
        "They fail closed, but are not paged as measured failures.",
        query(AWAITING_COUNT, "awaiting"),
        "blue",
    )


def _expiring() -> stat.Panel:
    return count_stat(
        11,
        "Evidence expiring within 7 days",
        "Attestations and pushed reports whose max_age runs out within the next 7 days: renew them before "
        "their gates fail. Evidence that has already lapsed is not counted (its gate fails already).",
        query(EXPIRING_COUNT, "expiring"),
        "orange",
    )


def _oldest() -> stat.Panel:
    return (
        stat_panel(
            12,
            "Oldest evidence",
            "Age of the oldest evidence any gate is judged on now (attestation or push time). Empty when no gate "
            "takes evidence from outside.",
            query(OLDEST_EVIDENCE, "oldest"),
            graph=common_model.BigValueGraphMode.NONE,
            colour=common_model.BigValueColorMode.NONE,
            span=8,
        )
        .unit("s")
        .decimals(1)
        .no_value("No evidence")
    )


def _sources() -> table.Panel:
    return (
        panel(
            table.Panel().show_header(True),
            13,
            "Manual vs measured",
            "Gates by where their verdict comes from: manual (attested by a person), pushed (reports sent from CI) "
            "or probed (measured by the exporter itself), with how many pass and how many await evidence.",
        )
        .with_target(query(SOURCE_GATES, ref="A", instant=True, table=True))
        .with_target(query(SOURCE_PASSING, ref="B", instant=True, table=True))
        .with_target(query(SOURCE_AWAITING, ref="C", instant=True, table=True))
        .with_transformation(MERGE)
        .with_transformation(
            rename(
                {"source": "Source", "Value #A": "Gates", "Value #B": "Passing", "Value #C": "Awaiting evidence"},
                hide=["Time"],
                order=["Source", "Gates", "Passing", "Awaiting evidence"],
            )
        )
        .unit("none")
        .decimals(0)
        .height(8)
        .span(8)
    )


def _per_gate() -> table.Panel:
    status = _by_gate(status_expr(GATES))
    evidenced = f"max by ({GATE_LABELS}, title, kind) (gate_info{{{GATES}}}) and on (tracker, gate) {AWAITING}"
    return (
        panel(
            table.Panel().show_header(True),
            14,
            "Evidence per gate",
            "Every manual and push-sourced gate: its status, whether it still awaits evidence, how old its evidence "
            "is and when it lapses (negative: lapsed). Soonest to lapse first.",
        )
        .with_target(query(evidenced, ref="A", instant=True, table=True))
        .with_target(query(f"{status} and on (tracker, gate) {AWAITING}", ref="B", instant=True, table=True))
        .with_target(query(_by_gate(AWAITING), ref="C", instant=True, table=True))
        .with_target(query(_by_gate(f"time() - {EVIDENCE_AT}"), ref="D", instant=True, table=True))
        .with_target(query(_by_gate(f"{EXPIRY} - time()"), ref="E", instant=True, table=True))
        .with_transformation(MERGE)
        .with_transformation(
            rename(
                {
                    "title": "Title",
                    "kind": "Kind",
                    "Value #B": "Status",
                    "Value #C": "Evidence",
                    "Value #D": "Evidence age",
                    "Value #E": "Lapses in",
                },
                hide=["Time", "tracker", "Value #A"],
                order=[
                    "phase",
                    "step",
                    "gate",
                    "Title",
                    "tier",
                    "Kind",
                    "Status",
                    "Evidence",
                    "Evidence age",
                    "Lapses in",
                ],
            )
        )
        .unit("s")
        .override_by_name(
            "Status", override(mappings=STATUS_MAPPINGS, custom__cellOptions={"type": "color-background"})
        )
        .override_by_name("Evidence", override(mappings=AWAITING_MAPPINGS, custom__cellOptions={"type": "color-text"}))
        .override_by_name(
            "Lapses in",
            override(thresholds=LAPSE_THRESHOLDS, custom__cellOptions={"type": "color-text"}),
        )
        .sort_by([_ascending("Lapses in")])
        .height(8)
        .span(16)
    )


def _by_gate(expr: str) -> str:
    """One series per gate (shards that both export a gate during a handover show it once)."""
    return f"max by ({GATE_LABELS}) ({expr})"


def _ascending(column: str) -> common.TableSortByFieldState:
    return common.TableSortByFieldState().display_name(column).desc(False)
