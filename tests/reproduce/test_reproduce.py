"""`ua-sam reproduce` end to end in smoke mode: every row, the outputs, reuse of finished rows."""

from __future__ import annotations

import json

import pytest

from uncertainty_adapters.integrations.pipeline.reproduce import job as reproduce_module
from uncertainty_adapters.integrations.pipeline.reproduce.cli import _pretraining_summary
from uncertainty_adapters.integrations.pipeline.reproduce.job import plan_tables
from uncertainty_adapters.integrations.pipeline.reproduce.report import BEGIN, END

from .conftest import reproduce


def test_the_command_writes_both_tables_the_sweep_results_and_figures(smoke_run):
    out = smoke_run["out"]
    for name in ("table1.md", "table2.md", "latent_dims.md", "results.json", "fig2.png", "latent_dims.png"):
        assert (out / name).is_file(), name
    table1 = (out / "table1.md").read_text()
    for method in ("Adapter-SAM", "Ensemble of 2 Adapter-SAMs", "Probabilistic U-Net", "UA-SAM (CMSM)"):
        assert method in table1
    table2 = (out / "table2.md").read_text()
    for method in ("(sample)", "(position)", "(concat)", "(cmsm)"):
        assert method in table2
    assert "not run yet" not in table1 + table2


def test_results_hold_mean_and_std_over_every_seed_for_every_row(smoke_run):
    results = json.loads((smoke_run["out"] / "results.json").read_text())
    assert set(results["tables"]) == {"table1", "table2", "latent_dims"}
    for key, row in results["rows"].items():
        assert row["seeds"] == [0, 1], key
        for metric in ("dice", "ged", "hm_iou", "diversity", "trainable_parameters", "train_seconds"):
            assert metric in row["mean"] and metric in row["std"], (key, metric)


def test_results_hold_the_field_metrics_with_pooled_intervals(smoke_run):
    results = json.loads((smoke_run["out"] / "results.json").read_text())
    assert results["samples"] == 2 and results["ged_samples"] == 4
    row = results["rows"]["ua-sam"]
    for metric in ("s_ncc", "soft_dice", "ece"):
        assert metric in row["mean"] and metric in row["ci95"], metric
    lo, hi = row["ci95"]["ged"]
    assert lo <= row["mean"]["ged"] <= hi
    assert all("per_image" not in record for record in row["per_seed"])


def test_the_settings_line_names_how_z_enters_and_is_trained(smoke_run):
    description = json.loads((smoke_run["out"] / "results.json").read_text())["description"]
    for setting in ("cmsm_activation softmax", "latent_placement bottleneck", "latent_prompt True", "free_bits 0.5",
                    "latent_lr 0.001"):
        assert setting in description, setting


def test_the_tables_name_k_for_dice_and_n_for_the_other_metrics(smoke_run):
    header = next(line for line in (smoke_run["out"] / "table1.md").read_text().splitlines() if line.startswith("| Method"))
    for column in ("Dice (K = 2)", "GED (N = 4)", "S_NCC", "Soft Dice", "ECE"):
        assert column in header


def test_s_ncc_is_computed_on_probabilities_so_a_deterministic_row_has_one(smoke_run):
    # As PHiSeg does (softmax outputs): identical samples still have an entropy map to correlate.
    rows = json.loads((smoke_run["out"] / "results.json").read_text())["rows"]
    assert -1.0 <= rows["adapter-sam"]["mean"]["s_ncc"] <= 1.0


def test_another_ged_samples_rescores_every_row_without_training(tmp_path, smoke_run, monkeypatch):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(smoke_run["out"], out)

    def refuse(*args, **kwargs):
        raise AssertionError("a trained run was trained again")

    monkeypatch.setattr(reproduce_module, "train", refuse)
    assert reproduce(out, smoke_run["cache"], "--ged-samples", "3") == 0
    evaluations = list((out / "runs").glob("*/seed-*/evaluation.json"))
    assert evaluations and all(json.loads(p.read_text())["ged_samples"] == 3 for p in evaluations)


def test_deterministic_rows_report_zero_diversity(smoke_run):
    rows = json.loads((smoke_run["out"] / "results.json").read_text())["rows"]
    assert rows["adapter-sam"]["mean"]["diversity"] == 0.0
    assert rows["position"]["mean"]["diversity"] == 0.0


def test_a_row_shared_by_two_tables_is_trained_once(smoke_run):
    rows = json.loads((smoke_run["out"] / "results.json").read_text())["rows"]
    assert rows["ua-sam"]["evaluation"] == rows["cmsm"]["evaluation"] == rows["latent-6"]["evaluation"]
    assert rows["ensemble"]["runs"][0] == rows["adapter-sam"]["runs"][0]
    trained = {p.parent.name for p in (smoke_run["out"] / "runs").glob("*/seed-*")}
    assert {"adapter-sam", "adapter-sam-member1", "prob-unet-c6", "ua-sam-cmsm-c6", "ua-sam-cmsm-c2"} <= trained


def test_the_ensemble_counts_the_parameters_and_time_of_all_members(smoke_run):
    rows = json.loads((smoke_run["out"] / "results.json").read_text())["rows"]
    single, ensemble = rows["adapter-sam"]["per_seed"][0], rows["ensemble"]["per_seed"][0]
    assert ensemble["trainable_parameters"] == 2 * single["trainable_parameters"]
    assert ensemble["train_seconds"] >= single["train_seconds"]


def test_the_report_is_generated_between_markers_and_keeps_the_reading(smoke_run):
    text = smoke_run["report"].read_text()
    assert text.startswith("# Results\n\nA reading written by a person.")
    assert BEGIN.format(section="results") in text and END.format(section="results") in text
    assert "### Table 1" in text
    assert (smoke_run["report"].parent / "images" / "reproduce-results-fig2.png").is_file()


def test_a_second_section_is_added_and_a_rerun_replaces_only_its_own_block(smoke_run, tmp_path):
    report = tmp_path / "results.md"
    report.write_text(smoke_run["report"].read_text() + "\nClosing words.\n")
    out = tmp_path / "side"
    assert reproduce(out, smoke_run["cache"], "--rows", "prob-unet", "--seeds", "1", "--report", str(report),
                     "--report-section", "side") == 0
    assert reproduce(out, smoke_run["cache"], "--rows", "prob-unet", "--seeds", "1", "--report", str(report),
                     "--report-section", "side") == 0
    text = report.read_text()
    assert text.count(BEGIN.format(section="results")) == 1 and text.count(BEGIN.format(section="side")) == 1
    assert "Closing words." in text
    side = text.split(BEGIN.format(section="side"))[1]
    assert "| Probabilistic U-Net |" in side and "| Adapter-SAM" not in side
    assert "ua-sam reproduce --data synthetic" in side


def test_a_row_selection_trains_only_those_rows(tmp_path, smoke_run):
    out = tmp_path / "only"
    assert reproduce(out, smoke_run["cache"], "--rows", "position", "--seeds", "1") == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["raters", "ua-sam-position"]
    assert not (out / "fig2.png").exists()


def test_first_seed_adds_seeds_beside_those_a_folder_holds_and_tabulates_its_own(tmp_path, smoke_run, monkeypatch):
    """A folder with seeds 0 and 1: `--first-seed 1 --seeds 2` reuses seed 1, computes only seed 2,
    and its tables, results.json and figure are over seeds 1 and 2."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(smoke_run["out"], out)
    trained = []
    original = reproduce_module.train
    monkeypatch.setattr(reproduce_module, "train", lambda job, **kw: trained.append(job.seed) or original(job, **kw))
    assert reproduce(out, smoke_run["cache"], "--rows", "position,adapter-sam", "--first-seed", "1") == 0
    assert trained == [2, 2]
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [1, 2] and results["rows"]["position"]["seeds"] == [1, 2]
    assert "over 2 seeds (1..2;" in (out / "table2.md").read_text()
    assert "2 seed(s) from 1; ensemble of 2;" in results["description"]
    assert (out / "runs" / "ua-sam-position" / "seed-0" / "evaluation.json").is_file()  # left as it was


def test_an_unknown_row_is_named_in_the_error(tmp_path, smoke_run, capsys):
    assert reproduce(tmp_path / "o", smoke_run["cache"], "--rows", "unet") == 2
    assert "unknown row(s) unet" in capsys.readouterr().err


def test_a_rerun_reuses_every_finished_row(smoke_run, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished row was computed again")

    monkeypatch.setattr(reproduce_module, "train", refuse)
    monkeypatch.setattr(reproduce_module, "evaluate", refuse)
    before = (smoke_run["out"] / "table1.md").read_text()
    assert reproduce(smoke_run["out"], smoke_run["cache"]) == 0
    assert (smoke_run["out"] / "table1.md").read_text() == before


def test_an_interrupted_run_is_resumed_from_its_checkpoint(tmp_path, smoke_run, monkeypatch):
    """Remove one row's evaluation and the end of its training: only that row is redone."""
    out = tmp_path / "out"
    import shutil

    shutil.copytree(smoke_run["out"], out)
    run = out / "runs" / "prob-unet-c6" / "seed-1"
    (run / "evaluation.json").unlink()
    (run / "run.json").unlink()
    calls = []
    real_train = reproduce_module.train

    def counting(job, **kwargs):
        calls.append((job.out, job.resume))
        return real_train(job, **kwargs)

    monkeypatch.setattr(reproduce_module, "train", counting)
    assert reproduce(out, smoke_run["cache"]) == 0
    assert calls == [(run, True)]
    assert (run / "evaluation.json").is_file()


def test_a_run_interrupted_before_its_first_checkpoint_is_started_over(tmp_path, smoke_run, monkeypatch):
    out = tmp_path / "out"
    import shutil

    shutil.copytree(smoke_run["out"], out)
    run = out / "runs" / "prob-unet-c6" / "seed-1"
    for name in ("evaluation.json", "run.json", "checkpoints"):
        shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    (run / "partial.txt").write_text("written by the interrupted run")
    calls = []
    real_train = reproduce_module.train

    def counting(job, **kwargs):
        calls.append((job.out, job.resume, (job.out / "partial.txt").exists()))
        return real_train(job, **kwargs)

    monkeypatch.setattr(reproduce_module, "train", counting)
    assert reproduce(out, smoke_run["cache"]) == 0
    assert calls == [(run, False, False)]


def test_a_folder_with_a_users_file_is_refused_before_anything_runs(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("three months of writing")
    assert reproduce(thesis, tmp_path / "cache") == 2
    assert "chapter1.tex" in capsys.readouterr().err
    assert sorted(p.name for p in thesis.iterdir()) == ["chapter1.tex"]
    assert not (tmp_path / "cache").exists()


def test_a_reproduction_recorded_before_a_preset_field_existed_is_reused(tmp_path, smoke_run, monkeypatch, capsys):
    import shutil

    def refuse(*args, **kwargs):
        raise AssertionError("a finished row was computed again")

    out = tmp_path / "older"
    shutil.copytree(smoke_run["out"], out)
    settings = json.loads((out / "reproduce.json").read_text())
    del settings["preset"]["latent_prompt"]  # as written before the field existed
    (out / "reproduce.json").write_text(json.dumps(settings))
    monkeypatch.setattr(reproduce_module, "train", refuse)
    monkeypatch.setattr(reproduce_module, "evaluate", refuse)
    # a record without the field meant "no latent prompt", which the demo now turns on
    assert reproduce(out, smoke_run["cache"]) == 2
    assert "preset.latent_prompt: False -> True" in capsys.readouterr().err
    assert reproduce(out, smoke_run["cache"], "--no-latent-prompt") == 0


def test_other_settings_on_the_same_folder_are_refused(smoke_run, capsys):
    assert reproduce(smoke_run["out"], smoke_run["cache"], "--beta", "0.5") == 2
    assert "preset.beta" in capsys.readouterr().err


def test_the_hour_budget_is_refused_for_paper_presets(tmp_path, capsys):
    from .conftest import ua_sam

    status = ua_sam("reproduce", "--data", "synthetic", "--preset", "paper-lidc", "--budget", "hour",
                    "--out", str(tmp_path / "o"))
    assert status == 2 and "demo preset" in capsys.readouterr().err


def test_the_plan_puts_cmsm_in_both_tables_and_the_sweep():
    tables = {t.key: t for t in plan_tables(latent_dim=6, members=4, latent_dims=(2, 4, 6, 8))}
    names = {key: [row.evaluation_name for row in t.rows] for key, t in tables.items()}
    assert names["table1"] == ["adapter-sam", "ensemble-m4", "prob-unet-c6", "ua-sam-cmsm-c6"]
    assert names["table2"] == ["ua-sam-sample-c6", "ua-sam-position", "ua-sam-concat-c6", "ua-sam-cmsm-c6"]
    assert names["latent_dims"][2] == "ua-sam-cmsm-c6"
    members = tables["table1"].rows[1].runs
    assert [m.model_seed(3) for m in members] == [3, 1003, 2003, 3003]


def test_an_ensemble_needs_a_member():
    with pytest.raises(ValueError, match="at least one member"):
        plan_tables(latent_dim=6, members=0)


def test_the_report_never_replaces_a_figure_file_its_block_does_not_show(smoke_run, tmp_path):
    from uncertainty_adapters.integrations.pipeline.output_dir import OutputFolderError
    from uncertainty_adapters.integrations.pipeline.reproduce.report import write_report

    report = tmp_path / "results.md"
    report.write_text("# Mine\n")
    theirs = tmp_path / "images" / "reproduce-results-fig2.png"
    theirs.parent.mkdir()
    theirs.write_bytes(b"a user's picture")
    figure = tmp_path / "fig2.png"
    figure.write_bytes(b"new figure")
    with pytest.raises(OutputFolderError, match="not a figure of the 'results' block"):
        write_report(report, {}, {}, {"comparison": figure})
    assert theirs.read_bytes() == b"a user's picture" and report.read_text() == "# Mine\n"


def test_the_settings_line_sums_the_pretraining_over_every_stage_of_the_backbone():
    first = {"seconds": 6190.0, "device": "cpu", "held_out_iou": 0.8168}
    continued = {"seconds": 3760.3, "device": "cpu", "held_out_iou": 0.855, "init": {"record": first}}
    assert _pretraining_summary(continued) == " (pretrained in 2 stages in 9950 s on cpu, held-out IoU on crisp shapes 0.855)"
    assert _pretraining_summary(first) == " (pretrained in 6190 s on cpu, held-out IoU on crisp shapes 0.8168)"
    assert _pretraining_summary({"source": "user"}) == ""
