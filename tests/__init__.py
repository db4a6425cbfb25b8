"""The test suite; a package so that tests share helpers (backbones.py) by ordinary imports."""
