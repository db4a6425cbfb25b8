"""A seconds-long `ua-sam reproduce` (the smoke budget), run once per session and read by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uncertainty_adapters.integrations import cli

SMOKE = ["--data", "synthetic", "--preset", "demo", "--budget", "smoke", "--seeds", "2",
         "--ensemble-members", "2", "--latent-dims", "2,6", "--figure-cases", "2", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and a busy CI machine makes them much slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ua_sam(*argv: str) -> int:
    """`ua-sam ARGV` -> exit status (argparse errors included)."""
    try:
        return cli.main(list(argv))
    except SystemExit as exit_:
        return int(exit_.code)


def reproduce(out: Path, cache: Path, *extra: str) -> int:
    return ua_sam("reproduce", *SMOKE, "--out", str(out), "--cache-dir", str(cache), *extra)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> dict[str, Path]:
    """One smoke reproduction: its output folder, its backbone cache and its report."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("reproduce")
    paths = {"out": root / "out", "cache": root / "cache", "report": root / "docs" / "results.md"}
    paths["report"].parent.mkdir()
    paths["report"].write_text("# Results\n\nA reading written by a person.\n")
    status = reproduce(paths["out"], paths["cache"], "--report", str(paths["report"]))
    torch.set_num_threads(threads)
    assert status == 0
    return paths
