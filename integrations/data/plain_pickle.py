"""Loading a pickle without running code from it: plain data only (the LIDC pickle's format).

A pickle names the classes and functions its loader imports and calls, so a crafted file can
name ``os.system`` and run a command while it is being loaded. `load_plain_pickle` resolves only
the names plain data needs and refuses any other before anything is imported or called (the
"Restricting Globals" recipe of Python's pickle documentation):

- Python's containers and scalars: dict, list, tuple, str, bytes, int, float, bool and None need
  no name; set, frozenset, bytearray and complex (``builtins``, or ``__builtin__`` in protocols
  0-2), and ``_codecs.encode`` (how protocols 0-2 store bytes);
- numpy arrays, scalars and dtypes: ``numpy.ndarray``, ``numpy.dtype``, and ``_reconstruct``,
  ``scalar`` and ``_frombuffer`` (protocol 5) under both numpy 1.x (``numpy.core``) and numpy 2.x
  (``numpy._core``) module paths. Nothing else from numpy.
"""

from __future__ import annotations

import builtins
import codecs
import importlib
import pickle
from typing import Any, BinaryIO

import numpy as np

_BUILTINS = ("set", "frozenset", "bytearray", "complex")
_NUMPY_CORE = {"multiarray": ("_reconstruct", "scalar"), "numeric": ("_frombuffer",)}


class ForbiddenPickleGlobal(pickle.UnpicklingError):
    """The pickle names a class or function outside the plain-data allow-list; ``name`` is it
    (``module.qualname``). Nothing the pickle names was imported or called."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the pickle names {name}, which plain data never needs; it was not loaded")
        self.name = name


def _numpy_core_module(part: str) -> Any:
    """numpy's ``_core.<part>`` (numpy 2.x), else ``core.<part>`` (numpy 1.x)."""
    try:
        return importlib.import_module(f"numpy._core.{part}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{part}")


def _allowed() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    allowed[("_codecs", "encode")] = codecs.encode
    for module in ("builtins", "__builtin__"):
        allowed.update({(module, name): getattr(builtins, name) for name in _BUILTINS})
    for part, names in _NUMPY_CORE.items():
        found = _numpy_core_module(part)
        for core in ("numpy.core", "numpy._core"):
            allowed.update({(f"{core}.{part}", name): getattr(found, name) for name in names})
    return allowed


class PlainDataUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that resolves only the names of the module docstring and raises
    `ForbiddenPickleGlobal` for any other."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self._allowed = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise ForbiddenPickleGlobal(f"{module}.{name}") from None


def load_plain_pickle(file: BinaryIO) -> Any:
    """Read one pickled object of plain data from the open binary ``file``.

    Raises:
        ForbiddenPickleGlobal: the pickle names anything else (a class, a function); nothing it
            names was run.
        pickle.UnpicklingError, EOFError: the file is not a (complete) pickle.
    """
    return PlainDataUnpickler(file).load()
