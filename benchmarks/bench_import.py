"""What importing the library and asking the CLI for help cost, side by side with `import torch`.

    python -m benchmarks.bench_import [--rounds 7] [--json]

Each case runs in a fresh interpreter (nothing cached in the process), the cases of a round one
after another in alternating order (benchmarks/timing.py), and the ratios are of the medians:

- ``import torch``                     the floor: the library needs torch
- ``import uncertainty_adapters``      target: at most 1.3x ``import torch``
- ``ua-sam --help``                    target: within 2.5 s (the console script, as a user runs it)

It also lists which heavy packages each case left in ``sys.modules`` (none of matplotlib,
accelerate, segment_anything, monai, torchvision should be there after the first two).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from .timing import interleaved, machine

HEAVY = ("matplotlib", "accelerate", "segment_anything", "monai", "torchvision", "scipy")

_REPORT_MODULES = (
    "import sys, json; print(json.dumps([m for m in " + repr(HEAVY) + " if m in sys.modules]))"
)

CASES = {
    "import torch": [sys.executable, "-c", "import torch"],
    "import uncertainty_adapters": [sys.executable, "-c", "import uncertainty_adapters"],
}


def _help_command() -> list[str]:
    script = shutil.which("ua-sam")
    if script is not None:
        return [script, "--help"]
    return [sys.executable, "-m", "uncertainty_adapters.integrations.cli", "--help"]


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def heavy_modules_after(code: str) -> list[str]:
    """The packages of ``HEAVY`` in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", f"{code}\n{_REPORT_MODULES}"], check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="Interleaved rounds (default 7).")
    parser.add_argument("--warmup", type=int, default=1, help="Unmeasured rounds first (default 1).")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = parser.parse_args(argv)

    commands = {**CASES, "ua-sam --help": _help_command()}
    timings = interleaved({name: (lambda c=command: _run(c)) for name, command in commands.items()},
                          rounds=args.rounds, warmup=args.warmup)
    medians = {name: timings.median(name) for name in commands}
    results = {
        "rounds": args.rounds,
        "median_seconds": {name: round(value, 3) for name, value in medians.items()},
        "import_ratio": round(medians["import uncertainty_adapters"] / medians["import torch"], 3),
        "help_seconds": round(medians["ua-sam --help"], 3),
        "help_over_torch": round(medians["ua-sam --help"] / medians["import torch"], 3),
        "heavy_modules": {
            "import uncertainty_adapters": heavy_modules_after("import uncertainty_adapters"),
            "ua-sam --help": heavy_modules_after(
                "from uncertainty_adapters.integrations import cli\n"
                "try:\n    cli.build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass"
            ),
        },
        "machine": machine(),
    }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, value in medians.items():
            print(f"{name:30s} median {value:6.3f} s over {args.rounds} rounds")
        print(f"import uncertainty_adapters / import torch = {results['import_ratio']:.2f}  (target <= 1.3)")
        print(f"ua-sam --help = {results['help_seconds']:.2f} s  (target <= 2.5 s); "
              f"{results['help_over_torch']:.2f}x import torch")
        for case, modules in results["heavy_modules"].items():
            print(f"heavy packages loaded by {case}: {', '.join(modules) or 'none'}")
    return results


if __name__ == "__main__":
    main()
