"""Benchmarks of the SPIRA continuous-training pipeline (``python -m bench.run_all``).

Every comparison is measured side by side in one run and reported as a ratio,
because absolute timings on shared machines drift from run to run.
"""
