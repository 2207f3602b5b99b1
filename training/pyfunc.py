"""The bundle as an MLflow pyfunc model: what the registry holds, and what `mlflow models serve` runs.

It does the same work per listing as the service (features, model, calibration, routing by the bundle's
policy), so the registry copy is a complete, self-contained model.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

BUNDLE_ARTIFACT = "bundle"


class BundleModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        from features.scoring import Bundle

        self.bundle = Bundle.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from features.policy import DECISIONS, match_rules, route
        from features.validate import validate_listings

        bundle = self.bundle
        listings = validate_listings(pd.DataFrame(model_input), bundle.config)
        risk = bundle.risk(listings)
        policy = bundle.policy
        segment = listings[policy.segment_by].astype(str).to_numpy() if policy.segment_by else None
        t_pass, t_block = policy.thresholds_for(segment) if segment is not None else (policy.t_pass, policy.t_block)
        rule_block, rule_review, _ = match_rules(listings, policy.rules)
        codes = route(risk, t_pass, t_block, rule_block, rule_review)
        return pd.DataFrame(
            {
                "listing_id": listings[bundle.config.id].to_numpy(),
                "risk": risk,
                "decision": np.asarray(DECISIONS, dtype=object)[codes],
            }
        )
