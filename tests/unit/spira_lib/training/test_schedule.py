"""Device choice and the Noam learning-rate schedule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spira_lib.config import TrainingConfig
from spira_lib.training import noam_lr, pick_device


def test_pick_device():
    assert pick_device(TrainingConfig(device="cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device(TrainingConfig(device="auto")).type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_pick_device_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="training.device"):
        pick_device(TrainingConfig(device="cuda"))


def test_noam_schedule_rises_to_peak_at_warmup_then_decays():
    lrs = [noam_lr(s, 1e-3, 100) for s in range(1, 1001)]
    assert lrs[0] == pytest.approx(1e-5)
    assert all(a < b for a, b in zip(lrs[:99], lrs[1:100]))  # strictly rising until step 100
    assert max(lrs) == pytest.approx(1e-3) and int(np.argmax(lrs)) == 99
    assert all(a > b for a, b in zip(lrs[99:], lrs[100:]))  # strictly decaying after
    assert noam_lr(400, 1e-3, 100) == pytest.approx(5e-4)  # sqrt(100/400) = 1/2
    assert noam_lr(7, 1e-3, 0) == 1e-3  # no warm-up: constant
