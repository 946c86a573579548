"""Shared test helpers (importable as ``helpers`` once ``tests/`` is on ``sys.path``)."""
