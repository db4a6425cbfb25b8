"""Tests of ``uncertainty_adapters.integrations.sam`` (a package so that test module names such as
``test_model`` cannot clash with test modules elsewhere under ``tests/``)."""
