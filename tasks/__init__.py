"""Thin Prefect tasks: resolve the workspace, call one spira_lib step, publish an artifact, return small values."""
