"""The throughput meter: images per second of the training loop only, and peak memory."""

from __future__ import annotations

import csv
import json
import time

import pytest
import torch

from uncertainty_adapters.integrations.pipeline.training.loop import LOG_CSV, train
from uncertainty_adapters.integrations.pipeline.training.throughput import Throughput

from .conftest import job


def test_rates_count_every_process_and_leave_paused_time_out():
    meter = Throughput(torch.device("cpu"), processes=2)
    meter.add(3)
    time.sleep(0.05)
    with meter.paused():
        time.sleep(0.3)  # validation: not training time
    window = meter.window()
    summary = meter.summary()
    assert summary["images"] == 6
    assert summary["seconds"] < 0.25
    assert window["images_per_s"] > 6 / 0.25
    assert window["peak_memory_gib"] is None and summary["peak_memory_gib"] is None  # CPU: no device memory


def test_a_window_starts_where_the_last_one_ended():
    meter = Throughput(torch.device("cpu"))
    meter.add(4)
    assert meter.window()["images_per_s"] > 0
    assert meter.window()["images_per_s"] is None  # nothing trained since
    assert meter.summary()["images"] == 4


def test_the_training_log_and_run_json_report_throughput(tmp_path, backbone_file):
    result = train(job(tmp_path / "run", max_steps=3, checkpoint_every=1000), backbone=backbone_file)
    with open(tmp_path / "run" / LOG_CSV) as handle:
        rows = [row for row in csv.DictReader(handle) if row["loss"]]
    assert [int(row["step"]) for row in rows] == [1, 2, 3]
    assert all(float(row["images_per_s"]) > 0 for row in rows)
    assert all(row["peak_memory_gib"] == "" for row in rows)  # CPU run
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["throughput"]
    assert recorded["images"] == 3 * 4 == result.throughput["images"]  # 3 steps of batch 4
    assert recorded["images_per_s"] == pytest.approx(recorded["images"] / recorded["seconds"], rel=1e-2)
