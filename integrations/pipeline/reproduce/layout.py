"""Every path and file name of a reproduction folder (DIR), in one place.

    DIR/reproduce.json                        the settings; a rerun with other settings is refused
    DIR/backbone.safetensors                  the frozen SAM weights every UA-SAM row shares
    DIR/runs/<run>/seed-<s>/                  a training run folder (run_dir.py layout), plus
        train_time.json                       its training time, steps and epochs
        evaluation.json, examples.safetensors once scored (a row of a table)
    DIR/runs/ensemble-m<M>/seed-<s>/          the ensemble's evaluation (its members are runs above)
    DIR/runs/raters/seed-<s>.json             the raters' own diversity on the test part
    DIR/<table>.md, results.json, invocations.json, fig2.png, latent_dims.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SETTINGS_FILE = "reproduce.json"
BACKBONE_FILE = "backbone.safetensors"
RUNS_DIR = "runs"
EVALUATION_FILE = "evaluation.json"
EXAMPLES_FILE = "examples.safetensors"
TRAIN_TIME_FILE = "train_time.json"
RATERS_DIR = "raters"
RESULTS_FILE = "results.json"
HISTORY_FILE = "invocations.json"
COMPARISON_FIGURE = "fig2.png"
LATENT_FIGURE = "latent_dims.png"


@dataclass(frozen=True)
class ReproductionLayout:
    """The paths of the reproduction folder ``out``."""

    out: Path

    @property
    def settings(self) -> Path:
        return self.out / SETTINGS_FILE

    @property
    def backbone(self) -> Path:
        return self.out / BACKBONE_FILE

    def run(self, name: str, seed: int) -> Path:
        """The folder of run (or evaluation) ``name`` at ``seed``."""
        return self.out / RUNS_DIR / name / f"seed-{seed}"

    def evaluation(self, name: str, seed: int) -> Path:
        return self.run(name, seed) / EVALUATION_FILE

    def examples(self, name: str, seed: int) -> Path:
        return self.run(name, seed) / EXAMPLES_FILE

    def train_time(self, name: str, seed: int) -> Path:
        return self.run(name, seed) / TRAIN_TIME_FILE

    def raters(self, seed: int) -> Path:
        return self.out / RUNS_DIR / RATERS_DIR / f"seed-{seed}.json"

    def table(self, key: str) -> Path:
        return self.out / f"{key}.md"

    @property
    def results(self) -> Path:
        return self.out / RESULTS_FILE

    @property
    def history(self) -> Path:
        return self.out / HISTORY_FILE

    @property
    def comparison_figure(self) -> Path:
        return self.out / COMPARISON_FIGURE

    @property
    def latent_figure(self) -> Path:
        return self.out / LATENT_FIGURE

    def train_times(self) -> Iterator[Path]:
        """Every run's train_time.json."""
        return (self.out / RUNS_DIR).glob(f"*/seed-*/{TRAIN_TIME_FILE}")

    def evaluations(self) -> Iterator[Path]:
        """Every scored row's evaluation.json."""
        return (self.out / RUNS_DIR).glob(f"*/seed-*/{EVALUATION_FILE}")
