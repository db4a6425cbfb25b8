"""compile_for_sampling: UA-SAM's encoder compiled in place for sampling."""

from __future__ import annotations

import pytest

from uncertainty_adapters.integrations.sam import build_uncertainty_sam, compile_for_sampling
from uncertainty_adapters.integrations.sam.compiled import is_compiled

from .conftest import TINY


def test_the_encoder_is_compiled_in_place_and_keeps_its_parameter_names():
    model = build_uncertainty_sam(TINY)
    names = [name for name, _ in model.named_parameters()]
    assert compile_for_sampling(model) is model
    assert is_compiled(model)
    assert [name for name, _ in model.named_parameters()] == names


def test_an_unknown_mode_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown compile mode 'fast'.*reduce-overhead"):
        compile_for_sampling(build_uncertainty_sam(TINY), mode="fast")
    assert not is_compiled(build_uncertainty_sam(TINY))
