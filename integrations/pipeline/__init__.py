"""The UA-SAM pipeline behind `ua-sam`: presets, Accelerate training with exact resume,
evaluation with the paper's metrics, figures, the demo backbone, and run folders.

By concept: `runtime` (device, command line, backbone choice, the logger), `presets` and
`preset_options`, `models` (the trainable-segmenter protocol, the factory, the baselines),
`training` (loop, resumable checkpoints, prior fit, logs), `evaluation`, `figures`, `predict`,
`reproduce`, `backbone` (the demo backbone: shipped, cached or pretrained), `run_dir` and
`output_dir` (the folders the commands write), `commands` (what each sub-command does).

    from uncertainty_adapters.integrations.pipeline import TrainJob, train, get_preset, load_run
"""

from uncertainty_adapters.integrations.lazy_exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".evaluation.scoring": ["EvaluationResult", "evaluate", "format_table", "write_metrics"],
        ".presets": ["PRESETS", "Preset", "get_preset"],
        ".run_dir": ["load_run", "read_run_config", "save_run"],
        ".training.loop": ["TrainingDiverged", "TrainJob", "TrainResult", "train"],
    },
)
