"""The store of the scoring service: decision log, review queue, verdict corrections, API keys, policy
and model audit, shadow decisions, monitoring, rule-analytics and decision-audit reads, blind second
reviews, gold items and reviewer activity over one SQLAlchemy Core schema, each part in its own module
(`decisions`, `queue`, `corrections`, `api_keys`, `policy_audit`, `model_audit`, `shadow`, `monitoring`,
`rule_log`, `decision_audit`, `second_review`, `gold`, `reviewer_activity`), all on one `database`.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from serving.store.api_keys import ApiKeyTable
from serving.store.corrections import VerdictCorrections
from serving.store.database import Clock
from serving.store.decision_audit import DecisionAuditReads
from serving.store.decision_history import DecisionHistoryReads
from serving.store.decisions import DecisionLog
from serving.store.gold import GoldItems
from serving.store.model_audit import ModelAudit
from serving.store.monitoring import MonitorReads
from serving.store.policy_audit import PolicyAudit
from serving.store.queue import ReviewQueue
from serving.store.records import utcnow
from serving.store.reviewed_listings import ReviewedListings
from serving.store.reviewer_activity import ReviewerActivity
from serving.store.rule_log import RuleLogReads
from serving.store.second_review import SecondReviews
from serving.store.shadow import ShadowLog


class Store(
    DecisionLog,
    ReviewQueue,
    ApiKeyTable,
    PolicyAudit,
    ModelAudit,
    ShadowLog,
    MonitorReads,
    RuleLogReads,
    DecisionHistoryReads,
    ReviewedListings,
    VerdictCorrections,
    DecisionAuditReads,
    SecondReviews,
    GoldItems,
    ReviewerActivity,
):
    """Durable storage of the scoring service. Thread-safe; create one per process (`create_store`)."""


def create_store(
    url: str,
    *,
    group_commit: bool | None = None,
    group_commit_ms: float = 2.0,
    pool_size: int = 8,
    clock: Clock = utcnow,
) -> Store:
    """Open the store at a database URL (creating the SQLite file's folder); call `init_schema()` next.
    A URL that does not parse is a ValueError that names it."""
    parsed = _parsed(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return Store(parsed, group_commit=group_commit, group_commit_ms=group_commit_ms, pool_size=pool_size, clock=clock)


def open_store(url: str, *, must_exist: bool = False) -> Store:
    """The store at a database URL with its schema brought up to date, closed again if that fails. With
    `must_exist` (a command that only reads the log), a SQLite file that does not exist is a ValueError
    naming the path, where `create_store` would make an empty log there (so a mistyped path reported
    "nothing found" and left a stray database behind)."""
    parsed = _parsed(url)
    if must_exist and parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(str(parsed.database))
        if not path.is_file():
            raise ValueError(
                f"no decision log at {path}: the file does not exist (the service creates it when it starts)"
            )
    store = create_store(url, group_commit=False)
    try:
        store.init_schema()
    except BaseException:
        store.close()
        raise
    return store


def _parsed(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise ValueError(
            f"{url!r} is not a database URL (e.g. sqlite:///decisions.db or postgresql://host/db)"
        ) from exc
