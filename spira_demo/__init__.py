"""Synthetic SPIRA-format demo data: a client of the core, not part of it.

No real SPIRA recordings can ship with this repository, so the demo, the tests
and the benchmarks run on speech-like audio synthesised here.
"""
from spira_demo.generator import *  # noqa: F403 - the generator's public names (its __all__)
from spira_demo.generator import __all__  # noqa: F401
