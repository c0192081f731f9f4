"""Prefect flows composed of the tasks in ``tasks/``."""
