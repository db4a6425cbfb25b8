"""The UA-SAM pipeline behind `ua-sam`: presets, Accelerate training with exact resume,
evaluation with the paper's metrics, figures, the demo backbone, and run folders.

    from uncertainty_adapters.integrations.pipeline import TrainJob, train, get_preset, load_run
"""

from uncertainty_adapters.integrations.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".evaluation": ["EvaluationResult", "evaluate", "format_table", "write_metrics"],
        ".presets": ["PRESETS", "Preset", "get_preset"],
        ".run_dir": ["load_run", "read_run_config", "save_run"],
        ".trainer": ["TrainingDiverged", "TrainJob", "TrainResult", "train"],
    },
)
