"""What each `ua-sam` sub-command does, given its parsed arguments (the CLI only parses)."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from accelerate import PartialState

from uncertainty_adapters import metrics
from uncertainty_adapters.integrations.data import build_dataset, data_options, dataset_kwargs_for, parse_data_spec
from uncertainty_adapters.integrations.pipeline import output_dir, run_dir
from uncertainty_adapters.integrations.pipeline.evaluation.sample_drawing import DEFAULT_MAX_ROWS
from uncertainty_adapters.integrations.pipeline.evaluation.sample_files import SAMPLES_DIR
from uncertainty_adapters.integrations.pipeline.evaluation.scoring import evaluate, format_table, write_metrics
from uncertainty_adapters.integrations.pipeline.figures.cases import save_cases_figure
from uncertainty_adapters.integrations.pipeline.predict import run_predict
from uncertainty_adapters.integrations.pipeline.preset_options import TRAINING_OPTIONS, preset_overrides
from uncertainty_adapters.integrations.pipeline.presets import ATTEMPTS, Preset, get_preset
from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME, choose_backbone, choose_device, command_line
from uncertainty_adapters.integrations.pipeline.training.attempts import check_attempts, holds_attempts, train_attempts
from uncertainty_adapters.integrations.pipeline.training.loop import (
    RUN_RECORDS,
    TrainingDiverged,
    TrainJob,
    check_out_dir,
)
from uncertainty_adapters.integrations.sam import compile_for_sampling
from uncertainty_adapters.integrations.sam.hf_checkpoint import resolve_sam_checkpoint

__all__ = ["TrainingDiverged", "run_demo", "run_evaluate", "run_predict", "run_train"]

logger = logging.getLogger(LOGGER_NAME)


def _preset_from(args: argparse.Namespace, name: str) -> Preset:
    return get_preset(name).replace(**preset_overrides(args, TRAINING_OPTIONS))


def _report(out: Path, model, dataset, preset: Preset, context: dict[str, Any], seed: int, cpu: bool,
            samples: int | None = None, batch_size: int = 8, ged_samples: int | None = None,
            save_samples: bool = False, max_rows: int = DEFAULT_MAX_ROWS, run_note: str = "") -> dict[str, Any]:
    """Evaluate, write metrics.json and figure.png (and with ``save_samples`` samples/*.npz) into
    ``out``, print the table. ``run_note`` ends the figure's title (e.g. which attempt was kept)."""
    k = preset.eval_samples if samples is None else samples
    n = preset.ged_samples if ged_samples is None else ged_samples
    model = model.to(choose_device(cpu))
    started = time.time()
    result = evaluate(model, dataset, num_samples=k, batch_size=batch_size, prompt=preset.prompt, seed=seed,
                      keep_examples=24, ged_samples=n, save_samples_to=out / SAMPLES_DIR if save_samples else None,
                      max_rows=max_rows)
    context = {**context, "eval_seconds": round(time.time() - started, 2)}
    summary = write_metrics(out / "metrics.json", result, context)
    figure = save_cases_figure(
        figure_cases(result.examples), out / "figure.png",
        title=f"UA-SAM ({preset.name}, {context['data']}): raters vs {k} samples from the prior{run_note}",
    )
    print(format_table(summary, title=f"UA-SAM on {context['data']} ({context.get('split', 'test')} part)"))
    print(f"metrics: {out / 'metrics.json'}\nfigure:  {figure}")
    if save_samples:
        print(f"samples: {out / SAMPLES_DIR} ({summary['num_images']} files)")
    return summary


def figure_cases(examples: list[dict[str, Any]], rows: int = 4) -> list[dict[str, Any]]:
    """The figure's cases: where the raters agree (up to half the rows) and where they disagree,
    each labelled so, so the figure shows whether the samples follow the raters' agreement."""
    agree, disagree = [], []
    for case in examples:
        same = bool(metrics.diversity(case["raters"][None].bool()).item() == 0)
        label = f"{case['case_id']}\nraters {'agree' if same else 'disagree'}"
        (agree if same else disagree).append({**case, "case_id": label})
    chosen = agree[: rows // 2]
    chosen = disagree[: rows - len(chosen)] + chosen
    rest = [case for case in disagree + agree if not any(case is c for c in chosen)]
    return chosen + rest[: rows - len(chosen)]


def _train_and_report(args: argparse.Namespace, preset: Preset, data: str) -> dict[str, Any]:
    out = Path(args.out)
    if args.overwrite and args.resume:
        raise ValueError("--resume continues the run in --out and --overwrite deletes it; pass one of them")
    attempts = attempts_of(args, preset.name)
    check_attempts(attempts)
    # Check the arguments, the data and the output folder before anything slow (e.g. pretraining
    # the demo backbone) and before --overwrite deletes anything.
    options = data_options(data, getattr(args, "lidc_split", None))
    build_dataset(data, preset.image_size, split="train", seed=args.seed, **dataset_kwargs_for(preset, data, options))
    # a file, a Hugging Face folder, or a cached hub name; a clear error otherwise
    backbone = resolve_sam_checkpoint(args.sam_checkpoint) if args.sam_checkpoint else None
    if args.overwrite:
        output_dir.remove(out, RUN_RECORDS, inputs=[("--data", parse_data_spec(data).path),
                                                    ("--sam-checkpoint", backbone),
                                                    ("--cache-dir", args.cache_dir)])
    check_out_dir(out, args.resume)
    backbone, source = choose_backbone(backbone, preset.sam, cache_dir=args.cache_dir, cpu=args.cpu)
    job = TrainJob(preset=preset, data=data, out=out, seed=args.seed, resume=args.resume,
                   max_steps=args.max_steps, cpu=args.cpu, dataset_kwargs=options)
    copy = backbone is not None and not args.sam_checkpoint  # the small demo backbone travels with the run
    result = train_attempts(job, attempts, backbone=backbone,
                            meta={"backbone_source": source, "command": command_line()}, copy_backbone=copy)
    speed = result.throughput
    memory = f", peak memory {speed['peak_memory_gib']:.2f} GiB" if speed.get("peak_memory_gib") is not None else ""
    logger.info("trained %d steps in %.0f s, %s images/s in the training loop%s%s", result.progress.step,
                result.seconds, speed.get("images_per_s"), memory, " (early stopping)" if result.stopped_early else "")
    if not PartialState().is_main_process:
        return {}  # under `accelerate launch`, the main process evaluates the test part
    model, run_meta = run_dir.load_run(out, device=choose_device(args.cpu))
    test = build_dataset(data, preset.image_size, split="test", seed=args.seed, **run_meta["dataset_kwargs"])
    context = {"data": data, "split": "test", "preset": preset.name, "checkpoint": str(out),
               "command": command_line(), "train_seconds": round(result.seconds, 1),
               "train_images_per_s": result.throughput.get("images_per_s")}
    return _report(out, model, test, preset, context, args.seed, args.cpu,
                   save_samples=args.save_samples, max_rows=args.max_rows, run_note=attempt_note(run_meta))


def attempts_of(args: argparse.Namespace, preset_name: str) -> int:
    """How many times this command may train the run: ``--attempts`` when given; else the preset's
    (`presets.ATTEMPTS`), except 1 for a ``--resume`` of a folder started as one run (no
    ``OUT/attempts``: it continues as it started) and for a new run capped by ``--max-steps`` (a
    smoke run stops before the end of the schedule, where whether the latent took hold is judged)."""
    if args.attempts is not None:
        return args.attempts
    if args.resume:
        return ATTEMPTS.get(preset_name, 1) if holds_attempts(Path(args.out)) else 1
    return 1 if args.max_steps is not None else ATTEMPTS.get(preset_name, 1)


def attempt_note(run_meta: dict[str, Any]) -> str:
    """The figure title's note on a run trained more than once (--attempts): which attempt it shows,
    of how many, with which seed (run.json's ``kept_attempt`` and ``attempts``); "" for a run trained
    once, with attempts or without."""
    kept = run_meta.get("kept_attempt")
    if kept is None or len(run_meta["attempts"]) == 1:
        return ""
    return f"\n(attempt {kept} of {len(run_meta['attempts'])} trained, seed {run_meta['attempts'][kept - 1]['seed']})"


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    return _train_and_report(args, _preset_from(args, args.preset), args.data)


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    return _train_and_report(args, _preset_from(args, "demo"), "synthetic")


def run_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else checkpoint
    output_dir.check(out, RUN_RECORDS)
    model, meta = run_dir.load_run(checkpoint, device=choose_device(args.cpu))
    if getattr(args, "compile", False):
        compile_for_sampling(model)
    preset = Preset.from_dict(meta["preset"])
    kwargs = {**(meta["dataset_kwargs"] if args.data == meta["data"] else {}), **data_options(args.data, args.lidc_split)}
    dataset = build_dataset(args.data, preset.image_size, split=args.split, seed=args.seed, **kwargs)
    output_dir.claim(out, "evaluate", RUN_RECORDS)
    context = {"data": args.data, "split": args.split, "preset": preset.name, "checkpoint": str(checkpoint),
               "command": command_line(), "compiled": bool(getattr(args, "compile", False))}
    return _report(out, model, dataset, preset, context, args.seed, args.cpu,
                   samples=args.samples, batch_size=args.batch_size, ged_samples=args.ged_samples,
                   save_samples=args.save_samples, max_rows=args.max_rows)
