"""Per-clip audio checks: pure, cached by content, reason codes from the decoder."""
from __future__ import annotations

import pytest

from spira_lib.config import AudioConfig
from spira_lib.validation import ClipCheck, check_clip
from tests.unit.spira_lib.validation._helpers import encode, voice


def test_check_clip_is_pure_and_serialisable():
    good = check_clip(encode(voice(1, sr=8000), 8000), AudioConfig(min_duration_s=0.5), name="a.wav")
    assert good.ok and good.reason is None
    assert good.duration_s == pytest.approx(0.6) and good.orig_sample_rate == 8000
    assert ClipCheck.from_dict(good.to_dict()) == good
    bad = check_clip(b"", AudioConfig(), name="a.wav")
    assert not bad.ok and bad.reason == "empty file (0 bytes)"  # no file name: shared by identical content
    assert bad.code == "empty_file"


def test_each_failure_carries_its_reason_code_not_only_words():
    cfg = AudioConfig(min_duration_s=0.5)
    assert check_clip(encode(voice(1, seconds=0.2, sr=8000), 8000), cfg).code == "too_short"
    assert check_clip(encode(voice(1, amp=1e-5, sr=8000), 8000), cfg).code == "silent"
    assert check_clip(b"RIFF0000WAVEjunk", cfg).code == "unreadable"


def test_a_cached_check_from_before_reason_codes_is_not_trusted():
    stale = {"ok": False, "reason": "clip is 0.2 s, shorter than the 0.5 s window", "duration_s": 0.2,
             "orig_sample_rate": 8000, "audio_config": "abc"}
    assert not ClipCheck.from_dict(stale).usable_as_cache("abc")
    assert ClipCheck.from_dict({**stale, "code": "too_short"}).usable_as_cache("abc")
    assert not ClipCheck.from_dict({**stale, "code": "too_short"}).usable_as_cache("other-settings")
