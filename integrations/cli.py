"""`ua-sam`: train, evaluate and demo UA-SAM from the command line (DESIGN.md section 6).

    ua-sam demo     [--out DIR]
    ua-sam train    --data SPEC --preset NAME --out DIR [--interaction X] [--epochs N] [--seed S] ...
    ua-sam evaluate --checkpoint DIR --data SPEC [--samples K] [--ged-samples N] [--save-samples] [--out DIR]
    ua-sam predict  --checkpoint DIR --image FILE (--point X,Y | --box X0,Y0,X1,Y1) [--samples K] --out DIR
    ua-sam app      --checkpoint DIR [--host 127.0.0.1] [--port 7860]
    ua-sam reproduce --data SPEC --preset NAME --out DIR [--seeds N] [--budget B] [--latent-dims 2,4,6,8]
    ua-sam pretrain-backbone --out FILE.safetensors [--steps N] [--device auto|cpu|cuda] ...

Errors in what the user gave (a missing file, a bad data folder, a checkpoint that does not fit)
end the command with one line on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.data import DATA_SPECS, LIDC_SPLIT_HELP, LIDC_SPLITS, DataError

from .app.server import add_app_parser, run_app
from .pipeline.backbone.pretrain_cli import add_pretrain_parser, run_pretrain
from .pipeline.predict.options import add_predict_parser
from .pipeline.preset_options import TRAINING_OPTIONS, add_preset_options
from .pipeline.presets import PRESETS
from .pipeline.reproduce.cli import add_reproduce_parser, run_reproduce

logger = logging.getLogger("ua-sam")

DATA_HELP = "Data spec: " + ", ".join(DATA_SPECS) + " (see the README for the folder layouts)."


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("overrides of the preset (default: the preset's value)")
    add_preset_options(group, TRAINING_OPTIONS)
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int, default=0, help="Seed of everything random (default 0).")
    run.add_argument("--sam-checkpoint", metavar="PATH", help="SAM weights: a segment-anything .pth/.safetensors "
                     "(sam_vit_b_01ec64.pth, medsam_vit_b.pth) or a local Hugging Face SamModel folder "
                     "(save_pretrained). Nothing is downloaded.")
    run.add_argument("--resume", action="store_true", help="Continue the run in --out from its last checkpoint.")
    run.add_argument("--overwrite", action="store_true",
                     help="Delete the run in --out first (only a folder ua-sam wrote; checked after the data).")
    run.add_argument("--max-steps", type=int, help="Stop after this many optimizer steps (smoke runs).")
    run.add_argument("--attempts", type=int, metavar="N",
                     help="Train up to N times, each with a new training seed on the same data, while the latent "
                     "has not taken hold (best epoch's raters' spread below 0.25 prior sigmas, or the samples' "
                     "diversity on the validation part under half the raters'); keep the first that holds, else "
                     "the one whose samples came closest. Attempts go to OUT/attempts/K. Default: the preset's "
                     "(demo 3, paper presets 1); 1 with --max-steps, or to --resume a run started without attempts.")
    run.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is present.")
    run.add_argument("--cache-dir", help="Where the pretrained demo backbone is cached.")
    _add_evaluation_outputs(run)


def _add_evaluation_outputs(group: argparse._ActionsContainer) -> None:
    group.add_argument("--save-samples", action="store_true",
                       help="Also write OUT/samples/<case_id>.npz per test image: the N samples (bool), their "
                       "probabilities (float16) and the raters (bool), to recompute any metric.")
    group.add_argument("--max-rows", type=int, default=128,
                       help="Most sampled masks (images x samples) decoded in one forward (default 128); lower it "
                       "if memory runs out at large N.")


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
    train.add_argument("--lidc-split", choices=LIDC_SPLITS, help=LIDC_SPLIT_HELP)
    _add_training_options(train)

    evaluate = commands.add_parser("evaluate", help="Evaluate a trained run on a data spec.")
    evaluate.add_argument("--checkpoint", required=True, help="The --out folder of 'ua-sam train' or 'ua-sam demo'.")
    evaluate.add_argument("--data", required=True, help=DATA_HELP)
    evaluate.add_argument("--samples", type=int,
                          help="K samples per image for the majority-vote Dice (default: the run's preset, 4 / 3).")
    evaluate.add_argument("--ged-samples", type=int,
                          help="N samples per image for GED, HM-IoU, diversity, S_NCC, soft Dice and ECE "
                          "(default: the run's preset, 16; 100 works).")
    evaluate.add_argument("--split", default="test", choices=("train", "test", "all"), help="Which part of the data (default test).")
    evaluate.add_argument("--lidc-split", choices=LIDC_SPLITS,
                          help=LIDC_SPLIT_HELP.replace("(default,", "(default: the run's own when --data is its data;"))
    evaluate.add_argument("--out", help="Where to write metrics.json and the figure (default: --checkpoint).")
    evaluate.add_argument("--batch-size", type=int, default=8, help="Images per forward (default 8).")
    evaluate.add_argument("--seed", type=int, default=0, help="Seed of prompts and samples (default 0).")
    evaluate.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is present.")
    evaluate.add_argument("--compile", action="store_true",
                          help="torch.compile the encoder for sampling (CUDA graphs on a GPU; the first batch pays the compile).")
    _add_evaluation_outputs(evaluate)

    add_predict_parser(commands)
    add_app_parser(commands)
    add_reproduce_parser(commands)
    add_pretrain_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    from .pipeline import commands  # the training stack (Accelerate, MONAI, segment-anything) once parsed

    try:
        if args.command == "demo":
            commands.run_demo(args)
        elif args.command == "train":
            commands.run_train(args)
        elif args.command == "predict":
            commands.run_predict(args)
        elif args.command == "app":
            run_app(args)
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
    except (OSError, ModuleNotFoundError) as error:  # 'ua-sam app': the port is taken, Gradio is missing
        if args.command != "app" or args.verbose:
            raise
        print(f"ua-sam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command == "app":
            return 0
        print(f"ua-sam {args.command}: interrupted; resume with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
