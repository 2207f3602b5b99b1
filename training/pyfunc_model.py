"""The MLflow "model from code" script for the registered model: MLflow runs this file when it loads the
model, so nothing is pickled (a pickled Python object would run arbitrary code when unpickled)."""

from mlflow.models import set_model

from training.pyfunc import BundleModel

set_model(BundleModel())
