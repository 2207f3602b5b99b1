"""Live merchant history in the service: the bundle's snapshot plus the verdicts recorded since.

Each process keeps, in its bundle's `features.merchant.MerchantUpdates`, the merchant outcomes reviewed
after the bundle's snapshot cutoff: loaded from the store when the engine is built (`follow_outcomes`),
added at once when this process records a verdict (the store hands the outcome over after commit:
`apply_outcome`), and refreshed from the store every `Settings.merchant_refresh_seconds` so that other
workers' verdicts arrive (`refresh`). Scoring reads only memory: no query per scored listing.

Staleness bound: a verdict this process records counts for every listing scored after its commit
returned. One recorded by another worker counts here at most one refresh period (plus the time of one
refresh query) after it committed, provided it committed within `COMMIT_GRACE` of its review time (the
review time is taken before the write): each refresh re-reads the outcomes reviewed in the last
`COMMIT_GRACE` before the latest one a refresh has read, and skips those it holds. A verdict that takes
longer than that to commit reaches this process at its next engine load (restart or reload). While
refreshes fail (the database unreadable), other workers' verdicts wait; each failure is logged.

Point in time: as in training, an outcome counts for a listing only if reviewed strictly before the
listing's creation time, the review time being the verdict's `reviewed_at` (the column `export-labels`
writes and training reads when the data config names `reviewed_at`, as the default does). A listing id
reviewed twice counts twice here, where training on `export-labels` keeps only its latest verdict.

Corrections: an amended verdict updates its merchant outcome in the correction's transaction (`rejected`
follows the new verdict; the review time stays the first verdict's, as `export-labels` keeps it), so the
store, training and every engine loaded afterwards count the verdict in force. A worker already running
keeps counting the verdict it held until it next loads a bundle (restart, reload, promotion): its
updates are keyed by decision and only ever added to, and the refresh does not re-read the amended
outcome (its review time is older than the refresh window), so an amendment is never counted twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from bundle.load import Bundle
from features.merchant import MerchantUpdates
from serving.engine import DecisionEngine
from serving.store.merchant_outcomes import MerchantOutcome, MerchantOutcomeLog

log = logging.getLogger(__name__)

COMMIT_GRACE = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def follow_outcomes(bundle: Bundle, store: MerchantOutcomeLog) -> MerchantUpdates | None:
    """Serve the bundle's merchant history live: attach updates to its feature builder and load every
    outcome in the store reviewed after its snapshot. None if the bundle has no merchant history."""
    updates = bundle.builder.live_merchant_updates()
    if updates is None:
        return None
    if bundle.config.merchant:
        store.merchant_column = bundle.config.merchant
    try:
        store.backfill_merchant_outcomes(_datetime(updates.since_us))
    except Exception:  # those verdicts then wait for the next retrain, as without the backfill
        log.exception("merchant outcomes: backfilling verdicts recorded before the table existed failed")
    added = refresh(updates, store)
    log.info("merchant history: %d outcomes recorded since the bundle's snapshot", added)
    return updates


def refresh(updates: MerchantUpdates, store: MerchantOutcomeLog) -> int:
    """Add the outcomes committed since the last refresh (see the staleness bound); returns how many."""
    since = max(updates.since_us, updates.synced_us - COMMIT_GRACE // _US)
    outcomes = store.merchant_outcomes_after(_datetime(since))
    added = sum(add(updates, outcome) for outcome in outcomes)
    if outcomes:
        updates.synced_us = max(updates.synced_us, _microseconds(outcomes[-1].reviewed_at))
    updates.forget_keys_before(since)
    return added


def add(updates: MerchantUpdates, outcome: MerchantOutcome) -> bool:
    """File one outcome; False if it is in the snapshot already or was added before."""
    return updates.add(outcome.decision_id, outcome.merchant_id, _microseconds(outcome.reviewed_at), outcome.rejected)


def engine_updates(engine: DecisionEngine) -> MerchantUpdates | None:
    """The live merchant updates of the engine's bundle (None: no bundle, or merchant history off)."""
    return engine.bundle.builder.merchant_updates if engine.bundle is not None else None


def apply_outcome(engine: DecisionEngine, outcome: MerchantOutcome) -> None:
    """A verdict this process just committed: count it at once in the engine's merchant history."""
    updates = engine_updates(engine)
    if updates is not None:
        add(updates, outcome)


def _microseconds(at: datetime) -> int:
    return (at - _EPOCH) // _US


def _datetime(us: int) -> datetime | None:
    """The UTC time `us` microseconds after the epoch; None before year 1 (an empty snapshot's cutoff)."""
    try:
        return _EPOCH + us * _US
    except OverflowError:
        return None
