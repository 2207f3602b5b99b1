"""Persistence of the scoring service: decision log, review queue, API keys and policy audit."""

from serving.store.records import (
    DECISIONS,
    SCOPES,
    VERDICTS,
    ApiKey,
    ConflictError,
    Decision,
    DecisionRecord,
    NotFoundError,
    PolicyChange,
    QueueItem,
    Review,
    Scope,
    StatementOfReasons,
    StoreClosedError,
    StoreError,
    Verdict,
)
from serving.store.store import Store, create_store

__all__ = [
    "DECISIONS",
    "SCOPES",
    "VERDICTS",
    "ApiKey",
    "ConflictError",
    "Decision",
    "DecisionRecord",
    "NotFoundError",
    "PolicyChange",
    "QueueItem",
    "Review",
    "Scope",
    "StatementOfReasons",
    "Store",
    "StoreClosedError",
    "StoreError",
    "Verdict",
    "create_store",
]
