"""The model lifecycle as the service sees it: only a promoted model serves, every change is audited,
and every worker follows the store.

- Promotion. `triage promote` moves the registry's `champion` alias and records a `promote` row in the
  store's `model_audit` table (who, why, the bundle). A reload that would change the model serving is
  refused unless the bundle is the latest promoted one, or the request is `force`d with a reason (then
  audited as `forced_reload`). Re-reading the bundle already serving changes no model and is allowed.
- The model in force is the newest `promote` / `reload` / `forced_reload` row; the shadow model the
  newest `shadow_set` / `shadow_clear` row; the policy in force for a bundle its newest `policy_versions`
  row. A process starting up serves the model in force (else the configured bundle).
- Every worker runs `follow_store`: every `follow_seconds` (half a second) one cheap query
  (`Store.change_marks`); when a mark moved, it loads the model in force, the shadow and the policy in
  force for its bundle, swapping each in one assignment, so a change made through any worker (or
  `triage promote`) reaches all of them within a second.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from bundle.manifest import BundleError
from decision.policy import Policy
from serving.engine import DecisionEngine
from serving.models import bundle_under, load_engine, policy_in_force, refreeze_after_swap
from serving.settings import Settings
from serving.shadow import ShadowScorer
from serving.store import Store
from serving.store.model_audit import SERVING_EVENTS, SHADOW_EVENTS, ChangeMarks, ModelChange

log = logging.getLogger(__name__)

REGISTRY_PREFIX = "models:/"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class NotPromoted(Exception):
    """A reload would serve a model nobody promoted."""


def check_promoted(store: Store, new_version: str | None, current_version: str | None) -> ModelChange | None:
    """The promotion that allows serving `new_version` (None: it is the model serving already);
    NotPromoted naming the champion otherwise."""
    if new_version == current_version:
        return None
    promoted = store.latest_model_change(("promote",))
    if promoted is not None and promoted.new_model == new_version:
        return promoted
    champion = (
        f"the promoted champion is {promoted.new_model} (by {promoted.actor} at {promoted.at:%Y-%m-%d %H:%M}Z)"
        if promoted is not None
        else "no model was promoted yet"
    )
    raise NotPromoted(
        f"bundle {new_version} is not the promoted champion: {champion}. Promote it first "
        "(`triage promote`, after the promotion gate), or reload with force: true and a reason"
    )


def in_force_path(store: Store, settings: Settings) -> str | Path:
    """The bundle a starting process serves: the model in force recorded in the store (if its bundle is
    still under the models directory), else the configured one."""
    change = store.latest_model_change(SERVING_EVENTS)
    if change is None or not change.bundle:
        return settings.bundle
    try:
        path = bundle_under(settings.models_root, change.bundle)
    except ValueError as exc:
        log.error("the model in force %s cannot be served (%s); serving %s", change.new_model, exc, settings.bundle)
        return settings.bundle
    if not path.is_dir():
        log.error("the model in force %s is gone from %s; serving %s", change.new_model, path, settings.bundle)
        return settings.bundle
    log.info("serving the model in force %s (%s by %s)", change.new_model, change.event, change.actor)
    return path


def shadow_source(source: str, settings: Settings) -> Path:
    """A shadow bundle's directory: a path under the models directory, or a registered model
    (`models:/listing-risk@candidate`) downloaded from the MLflow registry into the models directory
    (`registry-<name>-v<version>`, once per registered version: setting the same alias again reuses it),
    where a restart or another worker loads it again from the audited path. A registered
    model or alias the registry does not hold is a ValueError naming it."""
    if not source.startswith(REGISTRY_PREFIX):
        return bundle_under(settings.models_root, source)
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)
    settings.models_root.mkdir(parents=True, exist_ok=True)
    try:  # the registered version an alias points to now: one download per version, however often it is set
        version = get_model_name_and_version(mlflow.MlflowClient(), source)
    except MlflowException as exc:
        raise ValueError(f"bundle: {source} is not in the model registry ({exc.message})") from exc
    destination = settings.models_root / ("registry-" + re.sub(r"[^A-Za-z0-9._-]+", "_", "-v".join(map(str, version))))
    if not destination.is_dir():
        download = tempfile.mkdtemp(prefix=".registry-", dir=settings.models_root)
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=download)
            os.rename(download, destination)  # whole or not at all, for a worker that downloads it alongside
        except MlflowException as exc:
            raise ValueError(f"bundle: {source} is not in the model registry ({exc.message})") from exc
        except OSError:  # another worker put it in place first
            if not destination.is_dir():
                raise
        finally:
            shutil.rmtree(download, ignore_errors=True)
    manifests = sorted(destination.rglob("manifest.json"), key=lambda p: len(p.parts))
    if not manifests:
        raise BundleError(f"{source}: no bundle (manifest.json) in the registered model's artifacts")
    return manifests[0].parent


def load_shadow(source: str, settings: Settings, store: Store) -> ShadowScorer:
    """A shadow scorer for the bundle `source` names, with the policy in force for that bundle."""
    engine = load_engine(shadow_source(source, settings), settings.reasons, store, settings.signing_key)
    return ShadowScorer(engine, store, fraction=settings.shadow_fraction)


def startup_shadow(settings: Settings, store: Store) -> ShadowScorer | None:
    """The shadow a starting process scores with: the store's latest shadow_set (none after a
    shadow_clear), else TRIAGE_SHADOW_BUNDLE. A shadow that cannot load is logged and left out: it never
    stops the service from starting."""
    change = store.latest_model_change(SHADOW_EVENTS)
    source = settings.shadow_bundle if change is None else change.bundle if change.event == "shadow_set" else None
    if not source:
        return None
    try:
        shadow = load_shadow(source, settings, store)
    except Exception as exc:  # a shadow is optional: whatever went wrong, serve without one
        log.error("shadow model %s not loaded (%s: %s); serving without a shadow", source, type(exc).__name__, exc)
        return None
    log.info("shadow-scoring with %s (policy %s)", shadow.model_version, shadow.engine.policy.version)
    return shadow


def set_shadow(app: FastAPI, shadow: ShadowScorer | None) -> None:
    old: ShadowScorer | None = getattr(app.state, "shadow", None)
    app.state.shadow = shadow
    if old is not None and old is not shadow:
        old.close()


async def finish_shadow(app: FastAPI, timeout_s: float = 5.0) -> None:
    """At shutdown: let the shadow log what it was given (up to `timeout_s`), then stop it."""
    shadow: ShadowScorer | None = getattr(app.state, "shadow", None)
    if shadow is not None:
        try:
            await asyncio.wait_for(shadow.drained(), timeout_s)
        except TimeoutError:
            log.warning("shadow scoring still busy at shutdown: the rest of its backlog is dropped")
    set_shadow(app, None)


async def follow_store(app: FastAPI, interval_s: float) -> None:
    """Poll the store's change marks every `interval_s`; on a change, catch up (`catch_up`). Runs until
    cancelled; a failing poll is logged and tried again next time."""
    store: Store = app.state.store
    marks: ChangeMarks | None = None  # the first poll catches up on whatever changed while starting
    while True:
        await asyncio.sleep(interval_s)
        try:
            current = await run_in_threadpool(store.change_marks)
            if current != marks:
                async with app.state.admin_lock:
                    await catch_up(app)
                marks = current
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following the store's model and policy changes failed; retrying")


async def catch_up(app: FastAPI) -> None:
    """Load what the store says is in force and this worker does not serve: the model, the shadow, the
    policy for the bundle serving. Call under the admin lock."""
    store: Store = app.state.store
    settings: Settings = app.state.settings
    engine: DecisionEngine = app.state.engine
    change = await run_in_threadpool(store.latest_model_change, SERVING_EVENTS)
    if change is not None and change.bundle and change.new_model != engine.model_version:
        try:
            path = bundle_under(settings.models_root, change.bundle)
            engine = await run_in_threadpool(load_engine, path, settings.reasons, store, settings.signing_key)
        except (BundleError, ValueError) as exc:
            log.error(
                "cannot serve the model in force %s (%s); still serving %s", change.new_model, exc, engine.model_version
            )
        else:
            app.state.engine = engine
            refreeze_after_swap()
            log.info("now serving %s (%s by %s)", engine.model_version, change.event, change.actor)
    await _follow_policy(app, store)
    await _follow_shadow(app, store, settings)


async def _follow_policy(app: FastAPI, store: Store) -> None:
    engine: DecisionEngine = app.state.engine
    if engine.bundle is None:
        return
    raw: dict[str, Any] | None = await run_in_threadpool(store.policy_in_force, engine.bundle.version)
    if raw is None or raw.get("version") == engine.policy.version:
        return
    try:
        policy = Policy.from_dict(raw).validate(engine.bundle.config.listing_columns)
    except ValueError as exc:
        log.error(
            "the stored policy %s does not validate (%s); keeping %s", raw.get("version"), exc, engine.policy.version
        )
        return
    app.state.engine = engine.with_policy(policy)
    log.info("policy %s in force (was %s)", policy.version, engine.policy.version)


async def _follow_shadow(app: FastAPI, store: Store, settings: Settings) -> None:
    change = await run_in_threadpool(store.latest_model_change, SHADOW_EVENTS)
    shadow: ShadowScorer | None = getattr(app.state, "shadow", None)
    if change is None:
        return
    if change.event == "shadow_clear":
        if shadow is not None:
            set_shadow(app, None)
        return
    wanted = change.bundle or ""
    if shadow is not None and shadow.model_version == change.new_model:
        policy = await run_in_threadpool(_shadow_policy, store, shadow)
        if policy is not None:
            shadow.engine = shadow.engine.with_policy(policy)  # one assignment: batches see one policy
        return
    try:
        set_shadow(app, await run_in_threadpool(load_shadow, wanted, settings, store))
    except (BundleError, ValueError) as exc:
        log.error("cannot load the shadow model %s (%s)", change.new_model, exc)


def _shadow_policy(store: Store, shadow: ShadowScorer) -> Policy | None:
    """The policy in force for the shadow's bundle when it differs from the one it routes with."""
    bundle = shadow.engine.bundle
    if bundle is None:
        return None
    try:
        policy = policy_in_force(store, bundle)
    except BundleError as exc:
        log.error("shadow model %s: %s", bundle.version, exc)
        return None
    return policy if policy is not None and policy.version != shadow.engine.policy.version else None
