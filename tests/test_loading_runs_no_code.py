"""No file the package reads can run code: a scan of the package's source for the calls that
unpickle (`torch.load`, `pickle.load`, `numpy.load`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("uncertainty_adapters", "integrations", "benchmarks", "examples")
PLAIN_PICKLE = ROOT / "integrations" / "data" / "plain_pickle.py"


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call ``<anything>.<name>(...)`` (or ``<name>(...)``) in the package's source."""
    found = []
    for folder in PACKAGE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    func = node.func
                    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                    if called == name:
                        found.append((path, node))
    return found


def _where(path: Path, node: ast.Call) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


def _keyword(node: ast.Call, name: str):
    for keyword in node.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def test_the_scan_finds_the_known_torch_load():
    assert any(path.name == "checkpoint.py" for path, _ in _calls("load") if "sam" in path.parts)


def test_every_torch_load_passes_weights_only_true():
    offending = []
    for path, node in _calls("load"):
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "torch":
            value = _keyword(node, "weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                offending.append(_where(path, node))
    assert not offending, f"torch.load without weights_only=True: {offending}"


@pytest.mark.parametrize("name", ["load", "loads", "Unpickler"])
def test_only_the_plain_data_unpickler_touches_pickle(name):
    offending = [
        _where(path, node)
        for path, node in _calls(name)
        if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("pickle", "cPickle", "dill", "joblib") and path != PLAIN_PICKLE
    ]
    assert not offending, f"raw unpickling outside plain_pickle.py: {offending}"


def test_no_numpy_load_allows_pickles():
    offending = []
    for path, node in _calls("load"):
        value = _keyword(node, "allow_pickle")
        if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
            offending.append(_where(path, node))
    assert not offending, f"numpy.load with allow_pickle: {offending}"
