"""The Grafana dashboard's queries, taken apart: which series and label names each asks
for, and which of them a /metrics exposition lacks. The unit test checks them against the
metrics the code defines; the live tests (tests/ray) against a running ingress's /metrics.
"""

from __future__ import annotations

import json
import re
from typing import Callable

from tests.conftest import ROOT

DASHBOARD = ROOT / "helm" / "orchestrator" / "dashboards" / "orchestrator.json"

_METRIC = re.compile(r"\b(orchestrator_[a-zA-Z0-9_]+)\b")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_LABEL_VALUES = re.compile(r"label_values\(\s*[^,]+,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s", re.M)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def queries(dash: dict) -> list[str]:
    """Each panel target's expr and each template variable's query."""
    out = [t["expr"] for p in panels(dash) for t in p.get("targets", [])]
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]
            out.append(q["query"] if isinstance(q, dict) else q)
    return out


def series(expr: str) -> set[str]:
    """The series names an expression reads: as written (histograms' _bucket, counters'
    _total), which is how the text exposition names its samples too."""
    return set(_METRIC.findall(expr))


def labels(expr: str) -> set[str]:
    """Label names an expression groups by, matches on or asks the values of."""
    out = set(_LABEL_VALUES.findall(expr))
    for group in _GROUPING.findall(expr):
        out |= {g.strip() for g in group.split(",") if g.strip()}
    for sel in _SELECTOR.findall(expr):
        out |= set(_MATCHER.findall(sel))
    return out


def exposition(text: str) -> dict[str, set[str]]:
    """Sample name -> the label names its samples carry, from Prometheus text format."""
    out: dict[str, set[str]] = {}
    for name, body in _SAMPLE.findall(text):
        out.setdefault(name, set()).update(_LABEL.findall(body or ""))
    return out


def missing(text: str, wanted: Callable[[str], bool] = lambda name: True) -> list[str]:
    """What the dashboard asks for that `text` (a /metrics page) lacks: each series of an
    expression whose series all pass `wanted`, and each label it uses on every one of
    its series (an expression groups its series alike, so each must carry the label)."""
    have = exposition(text)
    out = []
    for expr in queries(load()):
        names = series(expr)
        if not names or not all(wanted(n) for n in names):
            continue
        for name in sorted(names):
            if name not in have:
                out.append(f"{name} (in {expr})")
                continue
            out += [f"{name}{{{lbl}}} (in {expr})" for lbl in sorted(labels(expr) - have[name])]
    return out
