"""The Grafana dashboard charts exactly the metrics the worker and the gateway export (a renamed metric must fail
here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import pipeline.gateway.metrics
import pipeline.metrics  # noqa: F401 - registers the worker's metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"


def test_every_charted_metric_is_exported():
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = {family.name + suffix for family in REGISTRY.collect() for suffix in suffixes.get(family.type, ("",))}
    queries = [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]
    charted = {name for query in queries for name in re.findall(r"\b(lfpipe_[a-z_]+)", query)}
    assert charted, "the dashboard charts nothing"
    assert charted - exported == set()


def test_every_exported_metric_is_charted():
    families = {family.name for family in REGISTRY.collect() if family.name.startswith("lfpipe_")}
    text = DASHBOARD.read_text()
    assert {name for name in families if name not in text} == set()
