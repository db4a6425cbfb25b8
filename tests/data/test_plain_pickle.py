"""LIDC pickles load through an allow-list: plain data loads, anything that could run code is
refused before it runs."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from uncertainty_adapters.integrations.data import DataError, LIDCDataset
from uncertainty_adapters.integrations.data.plain_pickle import ForbiddenPickleGlobal, load_plain_pickle

from .writers import lidc_entries, write_pickle


class _RunsACommand:
    """Pickles as a call of os.system: loading it with pickle.load runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _CallsEval:
    def __reduce__(self):
        return eval, ("1 + 1",)


def _crafted_lidc(tmp_path: Path) -> tuple[Path, Path]:
    """A file in the LIDC format whose first entry carries an os.system payload that would
    create ``proof``; returns (pickle, proof)."""
    proof = tmp_path / "payload-ran"
    entries = lidc_entries()
    entries[next(iter(entries))]["series_uid"] = _RunsACommand(f"touch {proof}")
    return write_pickle(tmp_path / "data_lidc.pickle", entries), proof


def test_a_crafted_lidc_pickle_is_refused_and_its_payload_never_runs(tmp_path: Path) -> None:
    path, proof = _crafted_lidc(tmp_path)
    with pytest.raises(DataError, match="not a plain LIDC pickle"):
        LIDCDataset(path, image_size=32, split="all")
    assert not proof.exists()


def test_the_refusal_names_the_class_the_pickle_holds(tmp_path: Path) -> None:
    path, _ = _crafted_lidc(tmp_path)
    with pytest.raises(DataError, match=rf"{os.system.__module__}\.system"):
        LIDCDataset(path, image_size=32, split="all")


def test_builtins_beyond_containers_and_scalars_are_refused() -> None:
    with pytest.raises(ForbiddenPickleGlobal, match="builtins.eval"):
        load_plain_pickle(io.BytesIO(pickle.dumps(_CallsEval())))


def test_numpy_functions_other_than_array_reconstruction_are_refused() -> None:
    class SavesAFile:
        def __reduce__(self):
            return np.save, ("somewhere.npy", np.zeros(1))

    with pytest.raises(ForbiddenPickleGlobal, match="numpy.save"):
        load_plain_pickle(io.BytesIO(pickle.dumps(SavesAFile())))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_lidc_format_loads_unchanged_under_every_protocol(protocol: int) -> None:
    entries = lidc_entries(count=3)
    loaded = load_plain_pickle(io.BytesIO(pickle.dumps(entries, protocol=protocol)))
    assert loaded.keys() == entries.keys()
    for key, entry in entries.items():
        assert loaded[key]["series_uid"] == entry["series_uid"]
        np.testing.assert_array_equal(loaded[key]["image"], entry["image"])
        assert all(np.array_equal(a, b) for a, b in zip(loaded[key]["masks"], entry["masks"]))


def test_numpy_1_module_paths_load_as_well() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    written = pickle.dumps({"image": array, "value": np.float32(2.5)}, protocol=0)  # text GLOBALs
    written = written.replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in written
    loaded = load_plain_pickle(io.BytesIO(written))
    np.testing.assert_array_equal(loaded["image"], array)
    assert loaded["value"] == np.float32(2.5)


def test_containers_and_scalars_load() -> None:
    data = {"set": {1, 2}, "frozen": frozenset("ab"), "bytes": b"\x00\xff", "bytearray": bytearray(b"x"),
            "complex": 1 + 2j, "tuple": (1, 2.5, None, True), "list": ["a"]}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert load_plain_pickle(io.BytesIO(pickle.dumps(data, protocol=protocol))) == data


def test_a_truncated_lidc_pickle_is_a_data_error(tmp_path: Path) -> None:
    whole = pickle.dumps(lidc_entries(count=3))
    (tmp_path / "cut.pickle").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="not a readable pickle"):
        LIDCDataset(tmp_path / "cut.pickle", image_size=32, split="all")
