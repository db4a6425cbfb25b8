"""Every public name has a docstring with an example, and the examples run as written."""

from __future__ import annotations

import doctest
import inspect

import pytest

import uncertainty_adapters as ua

CONSTANTS = {"INTERACTIONS", "__version__"}  # plain values: documented where they are defined
PUBLIC = [name for name in ua.__all__ if name not in CONSTANTS]
PUBLIC += [f"metrics.{name}" for name in ua.metrics.__all__]


def _resolve(dotted: str):
    obj = ua
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_has_a_docstring_with_an_example(name):
    doc = inspect.getdoc(_resolve(name)) or ""
    assert len(doc.splitlines()) >= 3, f"ua.{name} needs a docstring"
    assert "Example" in doc, f"the docstring of ua.{name} needs an Example"


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_examples_run(name):
    obj = _resolve(name)
    module = obj if inspect.ismodule(obj) else inspect.getmodule(obj)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(obj, f"ua.{name}", globs=dict(vars(module))):
        result = runner.run(test)
        assert result.failed == 0, f"the example in the docstring of ua.{name} fails (see the output above)"
