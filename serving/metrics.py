"""Prometheus metrics of one app: requests and latency by route, decisions, audits and their overturns,
verdict corrections, fallbacks, unknown categories, and the production monitor's estimates, drift PSI and
check states (refreshed in the background).

Each app has its own registry (tests build many apps in one process). With several uvicorn workers
each worker reports its own numbers; scrape them per worker or run one worker per container.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from serving.store import DecisionRecord

MONITOR_QUANTITIES = ("recall", "miss_rate", "block_precision", "queue_share")
STATUS_VALUES = {"ok": 0, "warn": 1, "alarm": 2}  # a check that could not judge (too few rows...) is -1
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "triage_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "triage_http_request_seconds",
            "HTTP request latency by route",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter("triage_decisions", "Logged decisions by type", ["decision"], registry=self.registry)
        self.qa_samples = Counter(
            "triage_qa_samples", "Automated decisions drawn for audit (they stay in force)", registry=self.registry
        )
        self.overturns = Counter(
            "triage_audit_overturns",
            "Audits whose verdict contradicted the automated decision in force, by that decision",
            ["decision"],
            registry=self.registry,
        )
        self.corrections = Counter(
            "triage_verdict_corrections",
            "Verdicts amended after they were recorded, by the verdict amended to and who amended it (own: the "
            "reviewer; supervisor: a review lead)",
            ["verdict", "by"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "triage_fallbacks", "Listings not scored by the model, by reason", ["reason"], registry=self.registry
        )
        self.unknown_categories = Counter(
            "triage_unknown_categories",
            "Scored listings with a categorical value the model has no code for (scored as unknown), by column",
            ["column"],
            registry=self.registry,
        )
        self.model_ready = Gauge("triage_model_ready", "1 when a valid bundle serves", registry=self.registry)
        self.production_estimate = Gauge(
            "triage_production_estimate",
            "Production estimate from the decision log over the monitor window (NaN: no verdicts yet), by "
            "quantity (recall, miss_rate, block_precision, queue_share) and bound (estimate, low, high)",
            ["quantity", "bound"],
            registry=self.registry,
        )
        self.drift_psi = Gauge(
            "triage_drift_psi",
            "Population stability index against the bundle's reference (risk, a listing feature) or the "
            "expected routing split (routing); NaN while too few decisions to judge",
            ["variable"],
            registry=self.registry,
        )
        self.monitor_status = Gauge(
            "triage_monitor_status",
            "State of a monitor check: 0 ok, 1 warn, 2 alarm, -1 not judged (too few decisions, no reference); "
            "check=overall is the worst",
            ["check"],
            registry=self.registry,
        )
        self.monitor_refreshed = Gauge(
            "triage_monitor_refreshed_timestamp_seconds",
            "When the monitor gauges were last refreshed",
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def observe_decisions(self, records: list[DecisionRecord]) -> None:
        for decision, n in Tally(r.decision for r in records).items():
            self.decisions.labels(decision).inc(n)
        for reason, n in Tally(r.fallback_reason for r in records if r.fallback_reason).items():
            self.fallbacks.labels(reason).inc(n)
        sampled = sum(r.qa_sample for r in records)
        if sampled:
            self.qa_samples.inc(sampled)

    def observe_overturn(self, decision: str) -> None:
        self.overturns.labels(decision).inc()

    def observe_correction(self, verdict: str, by: str) -> None:
        self.corrections.labels(verdict, by).inc()

    def observe_unknown_categories(self, unknown: list[list[tuple[str, str]]]) -> None:
        for column, n in Tally(column for item in unknown for column, _ in item).items():
            self.unknown_categories.labels(column).inc(n)

    def observe_monitor(self, report: dict[str, Any], statuses: dict[str, str]) -> None:
        """Set the monitor gauges from a `serving.monitor.report` and its checks' statuses."""
        for quantity in MONITOR_QUANTITIES:
            estimate = report["estimates"][quantity]
            for bound in ("estimate", "low", "high"):
                value = estimate[bound]
                self.production_estimate.labels(quantity, bound).set(float("nan") if value is None else value)
        drift = report["drift"]
        checks = [("risk", drift.get("risk")), ("routing", drift.get("routing")), *drift.get("features", {}).items()]
        for variable, check in checks:
            if check is not None:
                self.drift_psi.labels(variable).set(_judged_psi(check))
        for check, status in {**statuses, "overall": drift["status"]}.items():
            self.monitor_status.labels(check).set(STATUS_VALUES.get(status, -1))
        self.monitor_refreshed.set(time.time())

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _judged_psi(check: dict[str, Any]) -> float:
    """A drift check's PSI for its gauge: NaN while the window holds too few decisions to judge (the
    check's status says insufficient_data), so an alert on the gauge never fires on an idle service."""
    value = check.get("psi")
    return float("nan") if value is None or check.get("status") == "insufficient_data" else float(value)
