"""--attempts: a run whose latent did not take hold is trained again with a new training seed on
the same data; the folder then holds every attempt and reads as the kept one."""

from __future__ import annotations

import logging

import pytest

from uncertainty_adapters.integrations.cli import build_parser, main
from uncertainty_adapters.integrations.pipeline import presets, run_dir
from uncertainty_adapters.integrations.pipeline.commands import attempt_note, attempts_of
from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME
from uncertainty_adapters.integrations.pipeline.training import attempts as attempts_module
from uncertainty_adapters.integrations.pipeline.training import latent_hold
from uncertainty_adapters.integrations.pipeline.training.attempts import ATTEMPTS_DIR, attempt_seed, train_attempts

from .conftest import job
from .test_cli import SMALL


def _small_job(out, **kwargs):
    return job(out, epochs=1, prior_fit_epochs=0, **kwargs)


def test_the_first_attempt_keeps_the_seed_and_later_ones_get_new_seeds_of_their_own():
    assert attempt_seed(5, 1) == 5
    later = [attempt_seed(5, k) for k in (2, 3, 4)]
    assert len(set(later)) == 3 and 5 not in later and later == [attempt_seed(5, k) for k in (2, 3, 4)]
    assert attempt_seed(6, 2) != attempt_seed(5, 2)
    with pytest.raises(ValueError, match="counted from 1"):
        attempt_seed(5, 0)


def test_a_run_whose_latent_held_is_trained_once_and_the_folder_reads_as_that_attempt(
        tmp_path, backbone_file, monkeypatch):
    monkeypatch.setattr(latent_hold, "TAKEOFF_SPREAD", 0.0)  # every run holds
    monkeypatch.setattr(latent_hold, "SAMPLE_SHARE", 0.0)
    out = tmp_path / "run"
    result = train_attempts(_small_job(out), attempts=3, backbone=backbone_file)
    assert sorted(p.name for p in (out / ATTEMPTS_DIR).iterdir()) == ["1"]
    config = run_dir.read_run_config(out)
    assert config["kept_attempt"] == 1 and [a["seed"] for a in config["attempts"]] == [0]
    assert result.out == out and not (out / "checkpoints").exists()  # the attempt keeps its checkpoints
    assert (out / "adapters" / "adapter_model.safetensors").read_bytes() == (
        out / ATTEMPTS_DIR / "1" / "adapters" / "adapter_model.safetensors").read_bytes()
    run_dir.load_run(out)


@pytest.mark.parametrize("takeoff, share", [(1e9, 0.0), (0.0, 1e9)], ids=["spread-under-the-line", "samples-too-alike"])
def test_when_no_attempt_holds_every_one_is_trained_on_the_same_data_and_the_most_varied_samples_are_kept(
        tmp_path, backbone_file, monkeypatch, caplog, takeoff, share):
    monkeypatch.setattr(latent_hold, "TAKEOFF_SPREAD", takeoff)  # no run holds, by one line or the other
    monkeypatch.setattr(latent_hold, "SAMPLE_SHARE", share)
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    out = tmp_path / "run"
    train_attempts(_small_job(out), attempts=3, backbone=backbone_file)
    configs = [run_dir.read_run_config(out / ATTEMPTS_DIR / str(k)) for k in (1, 2, 3)]
    assert [c["seed"] for c in configs] == [attempt_seed(0, k) for k in (1, 2, 3)]
    assert {c["data_seed"] for c in configs} == {0}  # the same data, hence the same test part
    assert {c["split_seed"] for c in configs} == {0}  # and the first attempt's split: their checks compare
    assert {c["val_sample_diversity"]["raters"] for c in configs} == {configs[0]["val_sample_diversity"]["raters"]}
    spreads = [c["progress"]["best_rater_spread"] for c in configs]
    shares = [c["val_sample_diversity"]["share"] for c in configs]
    kept = 1 + shares.index(max(shares))
    config = run_dir.read_run_config(out)
    assert config["kept_attempt"] == kept and config["seed"] == attempt_seed(0, kept)
    assert [a["best_rater_spread"] for a in config["attempts"]] == spreads
    assert [a["sample_share"] for a in config["attempts"]] == shares
    assert (out / "adapters" / "adapter_model.safetensors").read_bytes() == (
        out / ATTEMPTS_DIR / str(kept) / "adapters" / "adapter_model.safetensors").read_bytes()
    again = [r.getMessage() for r in caplog.records if r.getMessage().startswith("attempt ")]
    assert len(again) == 2 and "training again with seed" in again[0] and "samples' share" in again[0]


def test_a_held_attempt_near_the_line_is_trained_again_and_the_largest_share_of_those_that_held_is_kept(
        tmp_path, backbone_file, monkeypatch, caplog):
    monkeypatch.setattr(latent_hold, "TAKEOFF_SPREAD", 0.0)  # every run holds ...
    monkeypatch.setattr(latent_hold, "SAMPLE_SHARE", 0.0)
    monkeypatch.setattr(latent_hold, "CHECK_MARGIN", 1e9)  # ... but none is clear of the line
    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    out = tmp_path / "run"
    train_attempts(_small_job(out), attempts=2, backbone=backbone_file)
    config = run_dir.read_run_config(out)
    records = config["attempts"]
    assert [r["attempt"] for r in records] == [1, 2] and all(r["held"] for r in records)
    assert all(r["sample_share_se"] is not None for r in records)
    assert config["kept_attempt"] == 1 + [r["sample_share"] for r in records].index(max(r["sample_share"] for r in records))
    again = [r.getMessage() for r in caplog.records if r.getMessage().startswith("attempt ")]
    assert len(again) == 1 and "standard error" in again[0] and "training again with seed" in again[0]


def test_an_attempt_that_held_outranks_one_that_did_not_then_the_samples_decide_and_what_was_not_measured_ranks_last():
    closeness = attempts_module._closeness
    records = [{"attempt": 1, "best_rater_spread": 0.9, "sample_share": 0.3, "held": False},
               {"attempt": 2, "best_rater_spread": 0.4, "sample_share": 0.45, "held": False},
               {"attempt": 3, "best_rater_spread": 1.5, "sample_share": None, "held": False}]  # trained before the check
    assert max(records, key=closeness)["attempt"] == 2
    assert max(records[2:] + [{"attempt": 4, "best_rater_spread": 0.1, "sample_share": None, "held": False}],
               key=closeness)["attempt"] == 3  # no share measured: the spread decides
    near = {"attempt": 5, "best_rater_spread": 0.3, "sample_share": 0.52, "held": True}
    lost_late = {"attempt": 6, "best_rater_spread": 0.1, "sample_share": 0.6, "held": False}  # spread under the line
    assert max([lost_late, near], key=closeness)["attempt"] == 5


def test_resume_skips_finished_attempts_and_finishes_the_run_and_each_mismatch_of_resume_and_folder_is_refused(
        tmp_path, backbone_file, monkeypatch):
    monkeypatch.setattr(latent_hold, "TAKEOFF_SPREAD", 1e9)
    train, calls = attempts_module.train, []

    def interrupted_after_the_first(*args, **kwargs):
        calls.append(args[0].seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train(*args, **kwargs)

    monkeypatch.setattr(attempts_module, "train", interrupted_after_the_first)
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="holds no attempts to resume"):
        train_attempts(_small_job(out, resume=True), attempts=2, backbone=backbone_file)
    with pytest.raises(KeyboardInterrupt):
        train_attempts(_small_job(out), attempts=2, backbone=backbone_file)
    assert not (out / run_dir.RUN_CONFIG).exists()  # unfinished: no run.json at the top
    first = (out / ATTEMPTS_DIR / "1" / run_dir.RUN_CONFIG).stat().st_mtime_ns
    monkeypatch.setattr(attempts_module, "train", train)
    with pytest.raises(FileExistsError, match="already holds attempts.*pass --resume"):
        train_attempts(_small_job(out), attempts=2, backbone=backbone_file)
    train_attempts(_small_job(out, resume=True), attempts=2, backbone=backbone_file)
    assert (out / ATTEMPTS_DIR / "1" / run_dir.RUN_CONFIG).stat().st_mtime_ns == first  # not trained again
    assert [a["attempt"] for a in run_dir.read_run_config(out)["attempts"]] == [1, 2]


def test_one_attempt_is_plain_training_and_zero_is_refused_before_anything_is_written(
        tmp_path, backbone_file, capsys):
    train_attempts(_small_job(tmp_path / "once"), attempts=1, backbone=backbone_file)
    assert not (tmp_path / "once" / ATTEMPTS_DIR).exists() and "attempts" not in run_dir.read_run_config(
        tmp_path / "once")
    code = main(["train", "--data", "synthetic", "--preset", "demo", "--out", str(tmp_path / "x"),
                 "--sam-checkpoint", str(backbone_file), "--attempts", "0", *SMALL])
    assert code == 2 and "--attempts" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_the_figure_of_a_run_trained_with_attempts_says_which_attempt_it_shows():
    assert attempt_note({"seed": 3}) == ""  # trained once
    assert attempt_note({"kept_attempt": 1, "attempts": [{"attempt": 1, "seed": 3}]}) == ""  # held at the first
    record = {"kept_attempt": 2, "attempts": [{"attempt": 1, "seed": 3}, {"attempt": 2, "seed": 99}]}
    assert attempt_note(record) == "\n(attempt 2 of 2 trained, seed 99)"


def test_the_command_line_trains_attempts_and_evaluates_the_kept_one(tmp_path, backbone_file, monkeypatch):
    monkeypatch.setattr(latent_hold, "TAKEOFF_SPREAD", 1e9)
    out = tmp_path / "run"
    assert main(["train", "--data", "synthetic", "--preset", "demo", "--out", str(out), "--sam-checkpoint",
                 str(backbone_file), "--epochs", "1", "--attempts", "2", *SMALL]) == 0  # a validation each
    assert sorted(p.name for p in (out / ATTEMPTS_DIR).iterdir()) == ["1", "2"]
    assert {"metrics.json", "figure.png", "run.json", "adapters"} <= {p.name for p in out.iterdir()}


def _attempts(tmp_path, preset: str, *extra: str) -> int:
    args = build_parser().parse_args(["train", "--data", "synthetic", "--preset", preset, "--out", str(tmp_path / "run"),
                                      *extra])
    return attempts_of(args, preset)


def test_the_demo_trains_a_lost_run_again_by_default_and_the_paper_presets_train_once(tmp_path):
    assert presets.ATTEMPTS == {"demo": 3}
    assert _attempts(tmp_path, "demo") == 3
    assert _attempts(tmp_path, "paper-lidc") == _attempts(tmp_path, "paper-refuge2") == 1
    assert _attempts(tmp_path, "demo", "--attempts", "1") == 1 and _attempts(tmp_path, "paper-lidc", "--attempts", "4") == 4
    assert attempts_of(build_parser().parse_args(["demo"]), "demo") == 3  # `ua-sam demo` is the demo preset


def test_a_capped_run_and_the_resume_of_a_run_started_once_are_trained_once_unless_attempts_are_asked_for(tmp_path):
    assert _attempts(tmp_path, "demo", "--max-steps", "5") == 1  # judged at the schedule's end, which it never reaches
    assert _attempts(tmp_path, "demo", "--max-steps", "5", "--attempts", "3") == 3
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # a run started as one run (before the default)
    assert _attempts(tmp_path, "demo", "--resume") == 1  # continues as it started
    (tmp_path / "run" / ATTEMPTS_DIR / "1").mkdir(parents=True)  # a run started with attempts continues with them
    assert _attempts(tmp_path, "demo", "--resume") == _attempts(tmp_path, "demo", "--resume", "--max-steps", "5") == 3


def test_the_command_line_reads_the_presets_number_of_attempts(tmp_path, backbone_file, monkeypatch):
    monkeypatch.setattr(latent_hold, "TAKEOFF_SPREAD", 1e9)  # no run holds
    monkeypatch.setitem(presets.ATTEMPTS, "demo", 2)
    out = tmp_path / "run"
    assert main(["train", "--data", "synthetic", "--preset", "demo", "--out", str(out), "--sam-checkpoint",
                 str(backbone_file), "--epochs", "1", *SMALL]) == 0
    assert sorted(p.name for p in (out / ATTEMPTS_DIR).iterdir()) == ["1", "2"]
    assert len(run_dir.read_run_config(out)["attempts"]) == 2
