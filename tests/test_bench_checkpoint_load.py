"""benchmarks/bench_checkpoint_load.py runs every route at a tiny size (in this process: the
script's fresh process per load is its own business) and reports what benchmarks/RESULTS.md quotes."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from benchmarks import bench_checkpoint_load


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_every_route_loads_the_same_weights_and_reports_its_costs(tmp_path, capsys):
    results = bench_checkpoint_load.main(
        ["--size", "demo", "--image-size", "32", "--rounds", "2", "--forwards", "1", "--dir", str(tmp_path / "ckpt"),
         "--json", str(tmp_path / "out.json")],
        runner=bench_checkpoint_load.measure,
    )
    routes = results["routes"]
    assert set(routes) == set(bench_checkpoint_load.ROUTES)
    assert all({"load_s", "peak_rss_mib", "forward_s", "embedding_abs_mean"} <= set(row) for row in routes.values())
    embeddings = [row["embedding_abs_mean"] for row in routes.values()]
    assert max(embeddings) - min(embeddings) < 1e-4 * max(embeddings)
    assert set(results["ratios"]) == {"hf_folder_vs_sam_pth", "hf_native_vs_sam_pth"}
    assert json.loads((tmp_path / "out.json").read_text())["config"]["image_size"] == 32
    assert "hf_folder" in capsys.readouterr().out
