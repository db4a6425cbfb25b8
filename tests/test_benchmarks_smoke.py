"""The benchmarks still run: every function of the suite and every script, once, at tiny sizes.

The timings themselves are not checked (a busy CI machine would make that flaky); what is
checked is that each workload runs and that the scripts report the keys RESULTS.md quotes.
The paper-budget check is exact: UA-SAM vit_b at the paper's configuration trains at most the
paper's 8.08M parameters.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import (
    bench_evaluate,
    bench_import,
    gpu_check,
    overhead,
    param_count,
    profile_encoder,
    speedups,
    test_throughput,
)
from benchmarks.workloads import TINY, Workloads


class _CallOnce:
    """Stands in for pytest-benchmark's fixture: runs the benchmarked function once."""

    def __init__(self) -> None:
        self.group, self.extra_info, self.calls = None, {}, 0

    def pedantic(self, fn, rounds: int, iterations: int, warmup_rounds: int = 0):
        self.calls += 1
        return fn()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared machine: one thread is many times faster than two (no spinning
    while another process holds the second core). Restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def work() -> Workloads:
    return Workloads(TINY)


def test_every_throughput_benchmark_runs_once(work):
    suite = [
        (test_throughput.test_encoder_forward, {"adapted": False}),
        (test_throughput.test_encoder_forward, {"adapted": True}),
        (test_throughput.test_sampling_batched, {"k": 4}),
        (test_throughput.test_sampling_k4_as_separate_forwards, {}),
        (test_throughput.test_training_step, {"checkpointing": False}),
        (test_throughput.test_training_step, {"checkpointing": True}),
        (test_throughput.test_latent_heads, {"low_resolution": True}),
        (test_throughput.test_latent_heads, {"low_resolution": False}),
    ]
    for function, kwargs in suite:
        benchmark = _CallOnce()
        function(benchmark, work, 1, **kwargs)
        assert benchmark.calls == 1 and benchmark.group


def test_overhead_reports_the_ratio_of_the_two_encoders(work):
    result = overhead.measure(TINY, rounds=1, warmup=0)
    assert result["overhead_ratio"] > 0 and result["t_ua_s"] > 0 and result["t_plain_s"] > 0
    assert {"target", "meets_target", "config", "overhead_ratio_cpu_time"} <= set(result)


def test_every_speedup_comparison_runs(work, monkeypatch):
    monkeypatch.setattr(speedups, "_peak_memory", lambda work, checkpointed: None)  # a subprocess each
    results = {name: compare(work, 1) for name, compare in speedups.COMPARISONS.items()}
    assert all(result["what"] for result in results.values())
    per_shape, per_workload = ("sdpa_paper_shapes", "fused_paper_shapes"), ("fused_attention",)
    assert all(result["ratio"] > 0 for name, result in results.items() if name not in per_shape + per_workload)
    for name in per_shape:
        assert set(results[name]) == {"what", "windows", "global"}
    assert results["fused_attention"]["training_step"]["fused_over_reference"] > 0
    # K hypotheses share block 0: it sees the images, block 1 sees images * K.
    assert results["k_batched"]["block_batches_at_k4"] == {"images": 1, "hypotheses": 4, "block0": 1, "block1": 4}


def test_ua_sam_paper_config_trains_at_most_the_papers_8_08m_parameters():
    rows = {row["name"]: row for row in param_count.rows_for("vit_b")}
    paper = rows["ua-sam-vit_b-paper"]
    assert paper["trainable"] <= param_count.PAPER_TRAINABLE
    assert sum(paper["breakdown"].values()) == paper["trainable"]
    parts = {"adapters", "cmsm", "reconstruct_eq4", "recon", "condition", "prior", "posterior"}
    assert set(paper["breakdown"]) == parts
    names = {"full-finetune-vit_b", "mask-decoder-vit_b", "adapters-vit_b", "lora-r96-vit_b", "ua-sam-vit_b-paper"}
    assert set(rows) == names
    lora, adapters = rows["lora-r96-vit_b"]["trainable"], rows["adapters-vit_b"]["trainable"]
    assert abs(lora - adapters) / adapters < 0.005  # the rank is chosen for a matching budget


def test_param_count_json_is_a_list_of_rows(capsys):
    param_count.main(["--json", "--variants", "vit_b"])
    rows = json.loads(capsys.readouterr().out)
    assert all(set(row) >= {"name", "trainable", "total", "breakdown"} for row in rows)


def test_gpu_check_cpu_smoke_writes_json_and_text(tmp_path, capsys):
    gpu_check.main(["--cpu-smoke", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert results["mode"].startswith("cpu-smoke")
    assert {"training", "sampling_k4", "plain_encoder", "ua_encoder", "shifts"} <= set(results)
    assert not results.get("errors")
    assert (tmp_path / "gpu_check.txt").read_text().startswith("UA-SAM GPU check")


def test_profile_encoder_cpu_smoke_counts_operators_of_every_variant(tmp_path, capsys):
    results = profile_encoder.main(["--cpu-smoke", "--out", str(tmp_path), "--batches", "2"])
    row = results["forward"]["batch_2"]
    assert set(row) == {"plain", "ua_none", "ua_cmsm", "ua_cmsm_one_by_one"}
    ops = {name: figures["aten_ops"] for name, figures in row.items()}
    assert ops["plain"] < ops["ua_none"] < ops["ua_cmsm_one_by_one"]  # adapters, then their CMSM chain
    assert all(figures["kernels"] == 0 for figures in row.values())  # no CUDA on the CPU
    assert "UA-SAM encoder" in (tmp_path / "profile_encoder.txt").read_text()


def test_bench_evaluate_reports_each_n_against_the_first():
    preset = bench_evaluate.get_preset("demo").replace(image_size=64, latent_resolution=32, synthetic_cases=10)
    result = bench_evaluate.measure(preset, (1, 2), rounds=1)
    assert [row["ged_samples"] for row in result["rows"]] == [1, 2] and result["images"] == 2
    assert result["rows"][0]["ratio_to_first"] == 1.0
    assert all({"wall_s", "cpu_s", "ratio_over_linear", "metrics_s"} <= set(row) for row in result["rows"])
    assert "x first" in bench_evaluate.format_result(result)


def test_bench_app_reports_first_and_second_click_through_the_api(capsys):
    pytest.importorskip("gradio", reason="the app extra is not installed")
    from benchmarks import bench_app

    report = bench_app.main(["--rounds", "1", "--samples", "2", "--json"])
    assert set(report["api"]) == {"first_click_s", "second_click_s", "second_to_first_ratio", "rounds", "samples"}
    parts = report["in_process"]
    assert set(parts) == {"model_first_s", "model_second_s", "drawing_s", "gradio_png_s"}
    assert all(seconds > 0 for seconds in parts.values())
    assert '"second_to_first_ratio"' in capsys.readouterr().out


def test_gpu_speed_cpu_smoke_measures_every_path_against_the_plain_encoder(tmp_path, capsys):
    from benchmarks import gpu_speed

    gpu_speed.main(["--cpu-smoke", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "gpu_speed.json").read_text())
    assert results["errors"] == {} and results["skipped"] == []
    assert {"eager", "cuda_graph"} <= set(results["training"]) and "sdpa_batch_2" in results["plain_encoder"]
    assert set(results["overhead"]) == {"batch_2", "batch_4"} and results["chosen_attention"] in gpu_speed.KINDS
    assert (tmp_path / "gpu_speed.txt").read_text().startswith("gpu_speed:")


def test_gpu_speed_leaves_out_the_items_named_by_skip_and_says_so(tmp_path, capsys):
    from benchmarks import gpu_speed

    gpu_speed.main(["--cpu-smoke", "--out", str(tmp_path), "--skip", "attention", "overhead", "sampling_n16"])
    results = json.loads((tmp_path / "gpu_speed.json").read_text())
    assert results["left_out"] == ["attention", "overhead", "sampling_n16"]
    assert not {"attention", "overhead", "sampling_n16"} & set(results)
    assert {"plain_encoder", "training", "training_largest", "mfu", "flex"} <= set(results)
    assert "left out (--skip): attention, overhead, sampling_n16" in (tmp_path / "gpu_speed.txt").read_text()
    with pytest.raises(SystemExit):  # the references of every ratio cannot be left out
        gpu_speed.main(["--cpu-smoke", "--out", str(tmp_path), "--skip", "plain_encoder"])


def test_bench_import_reports_the_ratio_and_the_heavy_modules():
    results = bench_import.main(["--rounds", "1", "--warmup", "0", "--json"])
    assert {"import torch", "import uncertainty_adapters", "ua-sam --help"} == set(results["median_seconds"])
    assert results["import_ratio"] > 0 and results["help_seconds"] > 0
    assert set(results["heavy_modules"]) == {"import uncertainty_adapters", "ua-sam --help"}
