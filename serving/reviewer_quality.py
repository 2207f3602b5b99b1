"""Review quality in the service: claims with gold items mixed in, and the reviewer quality report of a
window (`decision.reviewer_stats` over the store's reviewer activity), for the API and `triage reviewers`."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from decision.policy import Policy
from decision.reviewer_stats import reviewer_quality
from serving.store import QueueItem, Store

_draws = random.SystemRandom()


def claim_with_gold(store: Store, reviewer: str, n: int, lease_seconds: int, policy: Policy) -> list[QueueItem]:
    """A claim of n items under the policy in force: each is, with probability `quality.gold_rate`, a gold
    item this reviewer has not had (placed at a random position), else the next queue item (overdue audits
    first, by `audit.max_age_hours`)."""
    audit_max_age = timedelta(hours=policy.audit.max_age_hours)
    wanted = sum(_draws.random() < policy.quality.gold_rate for _ in range(n))
    gold = store.claim_gold(reviewer, wanted, lease_seconds)
    items = store.claim(reviewer, n - len(gold), lease_seconds, audit_max_age) if n > len(gold) else []
    for item in gold:
        items.insert(_draws.randrange(len(items) + 1), item)
    return items


def held_item(store: Store, item_id: str) -> QueueItem | None:
    """A queue item or a gold item as handed out, by id (a reviewer cannot tell them apart)."""
    return store.get_queue_item(item_id) or store.get_gold_item(item_id)


def release_item(store: Store, item_id: str, reviewer: str) -> None:
    """Give back a queue item's lease or a gold item, alike (NotFoundError / ConflictError as `release`)."""
    if store.is_gold_assignment(item_id):
        store.release_gold(item_id, reviewer)
    else:
        store.release(item_id, reviewer)


def quality_report(store: Store, since: datetime, until: datetime, confidence: float) -> dict[str, Any]:
    """The reviewer quality report of a window (`decision.reviewer_stats.reviewer_quality`)."""
    report = reviewer_quality(
        store.reviewer_verdicts(since, until),
        store.second_review_pairs(since, until),
        store.gold_answers(since, until),
        store.reviewer_teams(),
        confidence,
        store.amended_verdicts(since, until),
    )
    return {"window": {"since": since.isoformat(), "until": until.isoformat()}, **report}
