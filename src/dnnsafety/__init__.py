"""dnnsafety: safety analysis, failure detection and targeted retraining for image DNNs."""

from dnnsafety.config import RunConfig, load_config
from dnnsafety.data import Dataset, Split, load_dataset
from dnnsafety.exceptions import DnnSafetyError
from dnnsafety.pipeline import Pipeline
from dnnsafety.runs import RunDir

__version__ = "0.1.0"

__all__ = [
    "Dataset",
    "DnnSafetyError",
    "Pipeline",
    "RunConfig",
    "RunDir",
    "Split",
    "__version__",
    "load_config",
    "load_dataset",
]
