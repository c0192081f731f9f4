"""A small upload burst (the 5,000-object one is ``python -m bench.load_burst``, in ``make bench``).

Real moto S3/SQS with a bucket notification, the bridge as its own process,
the session's Prefect server with the production upload-burst automation:
every object becomes an event, and the burst gives exactly one flow run.
"""
from __future__ import annotations

import pytest

from bench.load_burst import burst

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OBJECTS = 150


def test_a_burst_gives_exactly_one_run(moto_endpoint, prefect_api_url, tmp_path, record_property) -> None:
    fig = burst(moto_endpoint, prefect_api_url, OBJECTS, workers=4, pollers=2, home=tmp_path, say=lambda m: None)
    record_property("load_burst_small", str(fig))
    print("\nburst:", fig)
    assert fig["bridge"]["stats"]["emitted"] >= OBJECTS  # at least once: a redelivery is emitted again
    assert fig["stored_events"] == OBJECTS  # ... and dropped by id on arrival
    assert fig["bridge"]["stats"]["failed"] == 0 and fig["bridge"]["stats"]["poison"] == 0
    assert fig["runs"] == 1
    assert fig["server_during_burst"]["errors"] == 0
