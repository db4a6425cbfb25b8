"""The distribution installs every package and keeps the core free of backbone imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_package_directory_is_listed_in_pyproject():
    found = {"uncertainty_adapters"} | {
        ".".join(("uncertainty_adapters", *init.parent.relative_to(ROOT / "uncertainty_adapters").parts))
        for init in (ROOT / "uncertainty_adapters").rglob("__init__.py")
    }
    found |= {
        ".".join(("uncertainty_adapters", "integrations", *init.parent.relative_to(ROOT / "integrations").parts))
        for init in (ROOT / "integrations").rglob("__init__.py")
    }
    assert found == _declared_packages()


def test_integrations_install_as_a_subpackage():
    import uncertainty_adapters.integrations as integrations

    assert Path(integrations.__file__).resolve().parent == ROOT / "integrations"


def test_core_imports_only_torch_safetensors_monai_and_the_standard_library():
    allowed = {"torch", "torchvision", "safetensors", "monai", "scipy", "numpy", "uncertainty_adapters"}
    offenders = []
    for path in (ROOT / "uncertainty_adapters").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in allowed and top not in sys.stdlib_module_names:
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []
