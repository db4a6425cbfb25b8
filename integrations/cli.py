"""`ua-sam`: train, evaluate and demo UA-SAM from the command line (DESIGN.md section 6).

    ua-sam demo     [--out DIR]
    ua-sam train    --data SPEC --preset NAME --out DIR [--interaction X] [--epochs N] [--seed S] ...
    ua-sam evaluate --checkpoint DIR --data SPEC [--samples K] [--out DIR]
    ua-sam predict  --checkpoint DIR --image FILE (--point X,Y | --box X0,Y0,X1,Y1) [--samples K] --out DIR
    ua-sam reproduce --data SPEC --preset NAME --out DIR [--seeds N] [--budget B] [--latent-dims 2,4,6,8]
    ua-sam pretrain-backbone --out FILE.safetensors [--steps N] [--device auto|cpu|cuda] ...

Errors in what the user gave (a missing file, a bad data folder, a checkpoint that does not fit)
end the command with one line on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import Sequence

from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.data import DATA_SPECS, DataError

from .pipeline.predict import add_predict_parser
from .pipeline.pretrain_cli import add_pretrain_parser, run_pretrain
from .pipeline.preset_options import TRAINING_OPTIONS, add_preset_options
from .pipeline.presets import PRESETS
from .pipeline.reproduce_cli import add_reproduce_parser, run_reproduce

logger = logging.getLogger("ua-sam")

DATA_HELP = "Data spec: " + ", ".join(DATA_SPECS) + " (see the README for the folder layouts)."


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("overrides of the preset (default: the preset's value)")
    add_preset_options(group, TRAINING_OPTIONS)
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="Seed of everything random (default 0).")
    run.add_argument("--sam-checkpoint", help="Official SAM weights (e.g. sam_vit_b_01ec64.pth) for vit_* presets.")
    run.add_argument("--resume", action="store_true", help="Continue the run in --out from its last checkpoint.")
    run.add_argument("--overwrite", action="store_true", help="Delete an existing run in --out first.")
    run.add_argument("--max-steps", type=int, help="Stop after this many optimizer steps (smoke runs).")
    run.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is present.")
    run.add_argument("--cache-dir", help="Where the pretrained demo backbone is cached.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ua-sam",
        description="Train and evaluate UA-SAM: SAM with uncertainty-aware adapters that samples "
        "several plausible segmentations and an uncertainty map.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="Log more detail.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="Load the small SAM backbone shipped with the package, train UA-SAM on synthetic lesions, evaluate.",
        description="The whole method on the CPU in minutes: a small SAM-architecture backbone, "
        "pretrained on crisp shapes and shipped with the package (ua-sam pretrain-backbone), is frozen "
        "and given uncertainty adapters trained on synthetic ambiguous lesions; the test part is "
        "evaluated and a figure written.",
    )
    demo.add_argument("--out", default="ua-sam-demo", help="Output folder (default ./ua-sam-demo).")
    _add_training_options(demo)

    train = commands.add_parser("train", help="Train UA-SAM on a data spec with a preset, then evaluate.")
    train.add_argument("--data", required=True, help=DATA_HELP)
    train.add_argument("--preset", required=True, choices=sorted(PRESETS), help="Named settings (paper-lidc, paper-refuge2, demo).")
    train.add_argument("--out", required=True, help="Output folder for weights, logs, metrics.json and the figure.")
    _add_training_options(train)

    evaluate = commands.add_parser("evaluate", help="Evaluate a trained run on a data spec.")
    evaluate.add_argument("--checkpoint", required=True, help="The --out folder of 'ua-sam train' or 'ua-sam demo'.")
    evaluate.add_argument("--data", required=True, help=DATA_HELP)
    evaluate.add_argument("--samples", type=int, help="K samples per image (default: the run's preset).")
    evaluate.add_argument("--split", default="test", choices=("train", "test", "all"), help="Which part of the data (default test).")
    evaluate.add_argument("--out", help="Where to write metrics.json and the figure (default: --checkpoint).")
    evaluate.add_argument("--batch-size", type=int, default=8, help="Images per forward (default 8).")
    evaluate.add_argument("--seed", type=int, default=0, help="Seed of prompts and samples (default 0).")
    evaluate.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is present.")

    add_predict_parser(commands)
    add_reproduce_parser(commands)
    add_pretrain_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    from .pipeline import commands  # heavy imports only after argument parsing

    try:
        if args.command in ("demo", "train") and args.overwrite and not args.resume:
            shutil.rmtree(Path(args.out), ignore_errors=True)
        if args.command == "demo":
            commands.run_demo(args)
        elif args.command == "train":
            commands.run_train(args)
        elif args.command == "predict":
            commands.run_predict(args)
        elif args.command == "reproduce":
            run_reproduce(args, sys.argv[1:] if argv is None else list(argv))
        elif args.command == "pretrain-backbone":
            run_pretrain(args, sys.argv[1:] if argv is None else list(argv))
        else:
            commands.run_evaluate(args)
    except (DataError, CheckpointMismatchError, FileNotFoundError, FileExistsError, ValueError) as error:
        if args.verbose:
            raise
        print(f"ua-sam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except commands.TrainingDiverged as error:
        print(f"ua-sam {args.command}: error: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"ua-sam {args.command}: interrupted; resume with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
