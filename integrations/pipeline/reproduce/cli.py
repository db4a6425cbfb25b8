"""`ua-sam reproduce`: its options, its budgets, and turning them into a `ReproduceJob`.

    ua-sam reproduce --data SPEC --preset NAME --out DIR [--seeds 3] [--first-seed 0] [--budget hour]
                     [--latent-dims 2,4,6,8] [--report docs/results.md]

Budgets (``--budget``) are named schedules applied on top of the preset, before any single
override (``--epochs`` etc.):

- ``preset``: the preset as `ua-sam train` runs it (the paper-scale run with ``paper-lidc``).
- ``hour``: the demo preset shrunk to fit an hour on a 2-core CPU with every row, 3 seeds and
  the latent sweep: 64 px images instead of 128 (8 x 8 tokens), fewer cases and epochs, the
  latent heads at 32 px. Demo preset only.
- ``smoke``: seconds; proves the pipeline runs end to end (CI), the numbers mean nothing.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from uncertainty_adapters.integrations.data import LIDC_SPLIT_HELP, LIDC_SPLITS
from uncertainty_adapters.integrations.pipeline.backbone.pretrain_settings import PretrainSettings
from uncertainty_adapters.integrations.pipeline.preset_options import (
    REPRODUCE_OPTIONS,
    add_preset_options,
    preset_overrides,
)
from uncertainty_adapters.integrations.pipeline.presets import PRESETS, get_preset
from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME, choose_backbone, command_line

logger = logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class Budget:
    """A named schedule: preset overrides, a per-run step cap, and the demo backbone's
    pretraining steps (None: the demo backbone shipped with the package, as `ua-sam demo`, at
    every image size)."""

    overrides: dict[str, Any] = field(default_factory=dict)
    max_steps: int | None = None
    pretrain_steps: int | None = None
    demo_only: bool = False
    summary: str = ""


BUDGETS: dict[str, Budget] = {
    "preset": Budget(summary="the preset's own schedule"),
    "hour": Budget(
        overrides=dict(image_size=64, synthetic_cases=500, epochs=8, latent_resolution=32, patience=3,
                       lr_step_epochs=6),
        demo_only=True,
        summary="64 px images, 500 synthetic cases, at most 8 epochs, latent heads at 32 px",
    ),
    "smoke": Budget(
        overrides=dict(image_size=64, batch_size=4, epochs=1, synthetic_cases=24, eval_samples=2, ged_samples=4,
                       latent_resolution=32, log_every=1, checkpoint_every=1000, prior_fit_epochs=1),
        max_steps=2, pretrain_steps=2,
        summary="2 steps per run on 24 cases: a pipeline check, not a result",
    ),
}

_SHOWN = ("image_size", "synthetic_cases", "epochs", "batch_size", "lr", "latent_lr", "beta", "kl_warmup", "free_bits",
          "geco_kappa", "posterior_noise_warmup", "posterior_noise_cycles", "prior_fit_epochs", "prior_components", "latent_dim", "cmsm_activation", "latent_placement",
          "latent_prompt", "latent_prompt_start",
          "latent_activation", "raters_per_image", "patience",
          "eval_samples", "ged_samples", "train_decoder", "prompt")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 2,4,6,8; got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, e.g. 2,4,6,8; got {text!r}")
    return values


def _name_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def add_reproduce_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``reproduce`` sub-command to an ``add_subparsers()`` object; returns its parser."""
    parser = subparsers.add_parser(
        "reproduce",
        help="Train and score every row of the paper's Tables 1 and 2 (and the latent sweep) over seeds.",
        description="Reproduce the paper's comparison at a scale you can run: Adapter-SAM, an ensemble of "
        "Adapter-SAMs, the Probabilistic U-Net and UA-SAM (Table 1), the ways of feeding z (Table 2), and "
        "optionally the latent-dimension sweep (Fig. 3a). Writes table1.md, table2.md, results.json and "
        "fig2.png to --out. Re-running on the same --out reuses every finished row.",
    )
    parser.add_argument("--data", required=True, help="Data spec: synthetic, lidc:PATH, refuge2:PATH or folder:PATH.")
    parser.add_argument("--lidc-split", choices=LIDC_SPLITS, help=LIDC_SPLIT_HELP)
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS), help="Named settings of every row.")
    parser.add_argument("--out", required=True, help="Output folder: new, empty, or an earlier reproduction "
                        "(reused on a re-run: finished rows are kept).")
    parser.add_argument("--seeds", type=int, default=3, help="How many seeds per row (default 3): S..S+N-1.")
    parser.add_argument("--first-seed", type=int, default=0, metavar="S",
                        help="The first seed (default 0). Seeds do not change the folder's settings, so "
                             "`--first-seed 3` in a folder that holds seeds 0-2 adds seeds 3.. beside them; "
                             "the tables are over the seeds of this invocation.")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="preset",
                        help="Schedule: preset (as `ua-sam train`), hour (demo on a 2-core CPU in about an "
                        "hour), smoke (seconds, a pipeline check). Default preset.")
    parser.add_argument("--latent-dims", type=_int_list, default=(), metavar="C1,C2,...",
                        help="Also sweep UA-SAM's latent dimension over these values (Fig. 3a), e.g. 2,4,6,8.")
    parser.add_argument("--ensemble-members", type=int, default=4, metavar="M",
                        help="Adapter-SAMs in the ensemble baseline (default 4).")
    parser.add_argument("--report", metavar="FILE.md",
                        help="Also write the tables and figures into this Markdown file (e.g. docs/results.md), "
                        "between marker lines; text outside them is kept.")
    parser.add_argument("--report-section", default="results", metavar="NAME",
                        help="Name of the generated block in --report (default results); other names add "
                        "further blocks, e.g. for side experiments.")
    parser.add_argument("--rows", type=_name_list, default=(), metavar="KEY,...",
                        help="Compute only these rows: adapter-sam, ensemble, prob-unet, ua-sam (Table 1), "
                        "sample, position, concat, cmsm (Table 2), latent-C (sweep). Default: all.")
    parser.add_argument("--figure-cases", type=int, default=4, help="Test cases in fig2.png (default 4).")
    group = parser.add_argument_group("overrides of the preset and budget")
    add_preset_options(group, REPRODUCE_OPTIONS)
    group.add_argument("--max-steps", type=int, help="Cap on optimizer steps per training run.")
    run = parser.add_argument_group("run")
    run.add_argument("--sam-checkpoint", metavar="PATH", help="SAM weights for every UA-SAM row: a segment-anything "
                     ".pth/.safetensors or a local Hugging Face SamModel folder (default for demo: the demo "
                     "backbone shipped with the package; required for a meaningful paper-* run).")
    run.add_argument("--cache-dir", help="Where the pretrained demo backbone is cached.")
    run.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is present.")
    run.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest for the demo on a busy CPU).")
    return parser


def _pretraining_summary(facts: dict[str, Any]) -> str:
    """' (pretrained in S s on DEVICE, held-out IoU ...)' for a pretrained demo backbone, S summed
    over the stages of a chain of ``pretrain-backbone --init`` runs; '' for other backbones."""
    if "held_out_iou" not in facts:
        return ""
    stages, record = [], facts
    while isinstance(record, dict):
        stages.append(record)
        record = (record.get("init") or {}).get("record")
    seconds = sum(stage.get("seconds", 0.0) for stage in stages)
    devices = ", ".join(dict.fromkeys(str(stage.get("device", "this machine")) for stage in stages))
    chain = f" in {len(stages)} stages" if len(stages) > 1 else ""
    return f" (pretrained{chain} in {seconds:.0f} s on {devices}, held-out IoU on crisp shapes {facts['held_out_iou']})"


def _backbone(args: argparse.Namespace, preset, budget: Budget) -> tuple[Path | None, dict[str, Any]]:
    """`choose_backbone` for every UA-SAM row, its source as a dict (results.json's record)."""
    settings = None  # the demo backbone: shipped with the package (any image size)
    if budget.pretrain_steps is not None:
        settings = PretrainSettings(image_size=preset.image_size, steps=budget.pretrain_steps, batch_size=4)
    path, source = choose_backbone(args.sam_checkpoint, preset.sam, args.cache_dir, args.cpu, settings)
    if isinstance(source, dict):
        return path, {**source, "source": f"pretrained demo backbone ({source['source']})"}
    return path, {"source": source, **({"path": str(path.resolve())} if path is not None else {})}


def run_reproduce(args: argparse.Namespace, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Carry out ``ua-sam reproduce``; returns what results.json holds.

    Args:
        args: the parsed options.
        argv: the command line's arguments (recorded in the outputs); None: ``sys.argv[1:]``.
    """
    import torch

    from uncertainty_adapters.integrations.data import build_dataset, data_options, dataset_kwargs_for
    from uncertainty_adapters.integrations.pipeline import output_dir
    from uncertainty_adapters.integrations.pipeline.reproduce.job import ReproduceJob, run_reproduction
    from uncertainty_adapters.integrations.pipeline.reproduce.layout import SETTINGS_FILE, ReproductionLayout

    command = command_line(argv)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
    if args.first_seed < 0:
        raise ValueError(f"--first-seed must be 0 or more, got {args.first_seed}")
    budget = BUDGETS[args.budget]
    preset = get_preset(args.preset)
    if budget.demo_only and preset.sam != "demo":
        raise ValueError(f"--budget {args.budget} shrinks the demo preset; for {preset.name} use --budget preset "
                         f"(with --epochs to shorten it)")
    user = preset_overrides(args, REPRODUCE_OPTIONS)
    preset = preset.replace(**budget.overrides).replace(**user)
    # Check the data and the output folder before anything slow (e.g. pretraining the demo backbone).
    options = data_options(args.data, args.lidc_split)
    build_dataset(args.data, preset.image_size, split="test", seed=0, **dataset_kwargs_for(preset, args.data, options))
    output_dir.check(Path(args.out), (SETTINGS_FILE,))
    backbone, facts = _backbone(args, preset, budget)
    values = preset.to_dict()
    shown = ", ".join(f"{key} {values[key]}" for key in _SHOWN if key in values)
    changed = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in user.items() if v is not None)
    description = (
        f"preset `{preset.name}` with budget `{args.budget}` ({budget.summary}"
        + (f"; then {changed}" if changed else "") + f"): {shown}; data `{args.data}`; "
        f"{args.seeds} seed(s)" + (f" from {args.first_seed}" if args.first_seed else "")
        + f"; ensemble of {args.ensemble_members}; "
        + (f"rows {', '.join(args.rows)}; " if args.rows else "") +
        f"backbone: {facts.get('source')}{_pretraining_summary(facts)}."
    )
    job = ReproduceJob(
        preset=preset, data=args.data, out=Path(args.out), seeds=args.seeds, first_seed=args.first_seed,
        members=args.ensemble_members,
        latent_dims=tuple(args.latent_dims), backbone=backbone, backbone_facts=facts,
        max_steps=args.max_steps if args.max_steps is not None else budget.max_steps,
        cpu=args.cpu, figure_cases=args.figure_cases, rows=tuple(args.rows), command=command,
        description=description, data_options=options,
    )
    results = run_reproduction(job, report=Path(args.report) if args.report else None, section=args.report_section)
    for key in results["tables"]:
        print(ReproductionLayout(job.out).table(key).read_text())
    print(f"results: {ReproductionLayout(job.out).results}")
    return results
