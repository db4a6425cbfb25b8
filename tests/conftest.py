"""Fixtures shared by every test: ``backbone``, each tiny backbone family in turn (tests/backbones.py)."""

from __future__ import annotations

import pytest

from .backbones import BACKBONES, Backbone


@pytest.fixture(params=sorted(BACKBONES))
def backbone(request) -> Backbone:
    return Backbone(request.param)
