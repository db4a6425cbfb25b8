"""The same training script under `accelerate launch` with two CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import SIZE


def test_two_process_cpu_training_writes_one_run(tmp_path, backbone_file):
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "uncertainty_adapters.integrations.cli", "train", "--data", "synthetic", "--preset", "demo",
        "--out", str(out), "--sam-checkpoint", str(backbone_file), "--image-size", str(SIZE),
        "--synthetic-cases", "40", "--batch-size", "2", "--max-steps", "3", "--samples", "2", "--cpu", "--prior-fit-epochs", "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["progress"]["step"] == 3
    checked = run["val_sample_diversity"]  # the validation images split over both processes, gathered once each
    assert checked is not None and checked["images"] == run["split"]["validation"] and checked["share_se"] >= 0
    assert json.loads((out / "metrics.json").read_text())["samples"] == 2
