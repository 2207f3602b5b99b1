"""Prometheus metrics of one app: requests and latency by route, decisions, audits and their overturns,
fallbacks, unknown categories.

Each app has its own registry (tests build many apps in one process). With several uvicorn workers
each worker reports its own numbers; scrape them per worker or run one worker per container.
"""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from serving.store import DecisionRecord

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

    def observe_unknown_categories(self, unknown: list[list[tuple[str, str]]]) -> None:
        for column, n in Tally(column for item in unknown for column, _ in item).items():
            self.unknown_categories.labels(column).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
