"""Tests of ``uncertainty_adapters.integrations.data`` (a package so that test module names
such as ``test_folder`` cannot clash with test modules elsewhere under ``tests/``)."""
