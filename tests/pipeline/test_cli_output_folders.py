"""`ua-sam train/demo/evaluate` and their output folders: nothing of the user's is deleted or
replaced, and --overwrite acts only after the arguments and the data were checked."""

from __future__ import annotations

from pathlib import Path

from uncertainty_adapters.integrations.cli import main
from uncertainty_adapters.integrations.pipeline import commands, output_dir

from .conftest import SIZE

SMALL = ["--image-size", str(SIZE), "--synthetic-cases", "40", "--batch-size", "4", "--samples", "2", "--cpu",
         "--prior-fit-epochs", "1"]


def train(out: Path, *extra: str, data: str = "synthetic") -> list[str]:
    return ["train", "--data", data, "--preset", "demo", "--out", str(out), *SMALL, *extra]


def users_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "chapter1.tex").write_text("three months of writing")
    return path


def earlier_run(path: Path) -> Path:
    """A run folder as `ua-sam train` leaves it (its marker and run.json)."""
    output_dir.claim(path, "train")
    (path / "run.json").write_text("{}")
    return path


def test_overwrite_keeps_a_users_file_and_exits_2_with_what_the_folder_holds(tmp_path, capsys, backbone_file):
    thesis = users_folder(tmp_path / "thesis")
    assert main(train(thesis, "--overwrite", "--sam-checkpoint", str(backbone_file))) == 2
    err = capsys.readouterr().err
    assert "chapter1.tex" in err and "Nothing was deleted" in err and len(err.strip().splitlines()) == 1
    assert (thesis / "chapter1.tex").read_text() == "three months of writing"
    assert sorted(p.name for p in thesis.iterdir()) == ["chapter1.tex"]


def test_overwrite_with_a_bad_data_path_deletes_nothing(tmp_path, capsys):
    run = earlier_run(tmp_path / "run")
    assert main(train(run, "--overwrite", data="folder:/typo")) == 2
    assert "/typo" in capsys.readouterr().err
    assert (run / "run.json").is_file()


def test_overwrite_with_a_missing_sam_checkpoint_deletes_nothing(tmp_path, capsys):
    run = earlier_run(tmp_path / "run")
    assert main(train(run, "--overwrite", "--sam-checkpoint", str(tmp_path / "none.pth"))) == 2
    assert "does not exist" in capsys.readouterr().err
    assert (run / "run.json").is_file()


def test_overwrite_never_deletes_the_current_folder(tmp_path, capsys, monkeypatch, backbone_file):
    run = earlier_run(tmp_path / "run")
    monkeypatch.chdir(run)
    assert main(train(Path("."), "--overwrite", "--sam-checkpoint", str(backbone_file))) == 2
    assert "current folder" in capsys.readouterr().err
    assert (run / "run.json").is_file()


def test_overwrite_and_resume_together_are_refused(tmp_path, capsys):
    run = earlier_run(tmp_path / "run")
    assert main(train(run, "--overwrite", "--resume")) == 2
    assert "pass one of them" in capsys.readouterr().err
    assert (run / "run.json").is_file()


def test_train_into_a_users_folder_without_overwrite_writes_nothing(tmp_path, capsys, backbone_file):
    thesis = users_folder(tmp_path / "thesis")
    assert main(train(thesis, "--sam-checkpoint", str(backbone_file))) == 2
    assert "chapter1.tex" in capsys.readouterr().err
    assert sorted(p.name for p in thesis.iterdir()) == ["chapter1.tex"]


def test_evaluate_into_a_users_folder_writes_nothing(tmp_path, capsys):
    thesis = users_folder(tmp_path / "thesis")
    assert main(["evaluate", "--checkpoint", str(tmp_path), "--data", "synthetic", "--out", str(thesis)]) == 2
    assert "chapter1.tex" in capsys.readouterr().err
    assert sorted(p.name for p in thesis.iterdir()) == ["chapter1.tex"]


def test_overwrite_deletes_an_earlier_run_before_training_starts(tmp_path, backbone_file, monkeypatch):
    run = earlier_run(tmp_path / "run")
    (run / "stale.txt").write_text("from the earlier run")
    seen = {}

    def stop_before_training(job, attempts, **kwargs):
        seen["holds"] = sorted(p.name for p in job.out.iterdir()) if job.out.exists() else None
        raise ValueError("stopped before training (test)")

    monkeypatch.setattr(commands, "train_attempts", stop_before_training)
    assert main(train(run, "--overwrite", "--sam-checkpoint", str(backbone_file))) == 2
    assert seen["holds"] is None
