"""Long-running services and Prefect deployments that sit around the pipeline (e.g. the S3 -> Prefect event bridge)."""
