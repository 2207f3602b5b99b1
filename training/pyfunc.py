"""The bundle as an MLflow pyfunc model: what the registry holds, and what `mlflow models serve` runs.

It does the same work per listing as the service (features, model, calibration, routing by the bundle's
policy), so the registry copy is a complete, self-contained model.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

BUNDLE_ARTIFACT = "bundle"


class BundleModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from bundle.load import Bundle

        self.bundle = Bundle.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from features.validate import validate_listings
        from training.offline import score_frame

        return score_frame(self.bundle, validate_listings(pd.DataFrame(model_input), self.bundle.config))
