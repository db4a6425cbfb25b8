"""Output folders: commands write only into new, empty or ua-sam folders, and --overwrite deletes
only a ua-sam folder, never the current, home or root folder, a link, or one holding an input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from uncertainty_adapters.integrations.pipeline import output_dir
from uncertainty_adapters.integrations.pipeline.output_dir import MARKER, OutputFolderError


def users_folder(path: Path) -> Path:
    """A folder holding a user's work."""
    path.mkdir(parents=True)
    (path / "chapter1.tex").write_text("three months of writing")
    return path


def ua_sam_folder(path: Path) -> Path:
    output_dir.claim(path, "train")
    (path / "metrics.json").write_text("{}")
    return path


def test_a_missing_or_empty_folder_may_be_written(tmp_path):
    output_dir.check(tmp_path / "new")
    output_dir.check(tmp_path)


def test_a_folder_with_a_users_file_is_refused_naming_the_file(tmp_path):
    with pytest.raises(OutputFolderError, match=r"1 entry \(chapter1.tex\).*new or empty folder"):
        output_dir.check(users_folder(tmp_path / "thesis"))


def test_a_file_is_refused_as_an_output_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        output_dir.check(tmp_path / "notes.txt")


def test_claim_marks_the_folder_with_the_command(tmp_path):
    output_dir.claim(tmp_path / "run", "predict")
    assert json.loads((tmp_path / "run" / MARKER).read_text())["written_by"] == "ua-sam predict"


def test_a_claimed_folder_may_be_written_again(tmp_path):
    output_dir.check(ua_sam_folder(tmp_path / "run"))


def test_a_folder_with_a_record_of_an_older_version_is_ua_sams(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    assert output_dir.is_ours(tmp_path / "run", ("run.json",))
    assert not output_dir.is_ours(tmp_path / "run")


def test_remove_deletes_a_ua_sam_folder(tmp_path):
    output_dir.remove(ua_sam_folder(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_remove_refuses_a_users_folder_and_keeps_every_file(tmp_path):
    thesis = users_folder(tmp_path / "thesis")
    with pytest.raises(OutputFolderError, match=r"only a folder that ua-sam wrote.*chapter1.tex.*Nothing was deleted"):
        output_dir.remove(thesis)
    assert (thesis / "chapter1.tex").read_text() == "three months of writing"


def test_remove_never_deletes_the_current_folder(tmp_path, monkeypatch):
    run = ua_sam_folder(tmp_path / "run")
    monkeypatch.chdir(run)
    with pytest.raises(OutputFolderError, match="current folder"):
        output_dir.remove(Path("."))
    assert (run / MARKER).is_file()


def test_remove_never_deletes_a_folder_holding_the_current_one(tmp_path, monkeypatch):
    run = ua_sam_folder(tmp_path / "run")
    (run / "sub").mkdir()
    monkeypatch.chdir(run / "sub")
    with pytest.raises(OutputFolderError, match="above it"):
        output_dir.remove(run)
    assert run.is_dir()


def test_remove_never_deletes_the_home_folder(tmp_path, monkeypatch):
    home = ua_sam_folder(tmp_path / "home")
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(OutputFolderError, match="home folder"):
        output_dir.remove(home)
    assert home.is_dir()


def test_remove_never_deletes_a_filesystem_root():
    root = Path(Path.cwd().anchor)
    with pytest.raises(OutputFolderError, match="filesystem root"):
        output_dir.remove(root)


def test_remove_refuses_a_folder_holding_an_input(tmp_path):
    run = ua_sam_folder(tmp_path / "run")
    (run / "data").mkdir()
    with pytest.raises(OutputFolderError, match="the --data this command reads"):
        output_dir.remove(run, inputs=[("--data", run / "data"), ("--sam-checkpoint", None)])
    assert (run / "data").is_dir()


def test_remove_does_not_follow_a_symbolic_link(tmp_path):
    run = ua_sam_folder(tmp_path / "run")
    (tmp_path / "link").symlink_to(run, target_is_directory=True)
    with pytest.raises(OutputFolderError, match="symbolic link"):
        output_dir.remove(tmp_path / "link")
    assert (run / MARKER).is_file()
