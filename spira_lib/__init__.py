"""SPIRA training core: data validation, features, SpiraConv, evaluation, registry.

Imports no orchestration framework; Prefect lives in ``tasks/`` and ``flows/``.
"""
__version__ = "0.1.0"
