"""The UA-SAM pipeline behind `ua-sam`: presets, Accelerate training with exact resume,
evaluation with the paper's metrics, figures, the demo backbone, and run folders.

    from uncertainty_adapters.integrations.pipeline import TrainJob, train, get_preset, load_run
"""

from .evaluation import EvaluationResult, evaluate, format_table, write_metrics
from .presets import PRESETS, Preset, get_preset
from .run_dir import load_run, read_run_config, save_run
from .trainer import TrainingDiverged, TrainJob, TrainResult, train

__all__ = [
    "PRESETS",
    "EvaluationResult",
    "Preset",
    "TrainJob",
    "TrainResult",
    "TrainingDiverged",
    "evaluate",
    "format_table",
    "get_preset",
    "load_run",
    "read_run_config",
    "save_run",
    "train",
    "write_metrics",
]
