"""Package namespaces that import their submodules on first use (PEP 562).

A package ``__init__`` lists the names it exports and the submodule that defines each; the
submodule is imported when the name is first read, so that importing the package (or one light
submodule of it, e.g. for the command line's choices) does not import every heavy dependency.

    __getattr__, __dir__, __all__ = lazy_exports(__name__, {".build": ["build_sam"], ...})
"""

from __future__ import annotations

import importlib
from typing import Callable, Iterable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """(``__getattr__``, ``__dir__``, ``__all__``) of ``package``; ``exports`` maps a relative
    submodule name (``".build"``) to the names it defines that the package re-exports."""
    owner = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in owner:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(owner[name], package), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # later reads skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(owner))

    return __getattr__, __dir__, sorted(owner)
