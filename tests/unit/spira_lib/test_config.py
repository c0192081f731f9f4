import re
from pathlib import Path

import pytest

from spira_lib.config import ConfigError, SpiraConfig, build_config, load_config, parse_override
from spira_lib.pipeline.workspace import TRAINING_SECTIONS


def test_defaults_keep_spiras_front_end_with_the_quality_recipe():
    cfg = load_config()
    assert cfg.features.sample_rate == 16000
    # SPIRA's MFCC front end with 20 coefficients instead of 40 (bench/quality.py chose it).
    assert (cfg.features.n_mfcc, cfg.features.n_fft, cfg.features.hop_length, cfg.features.win_length) == (20, 1200, 160, 400)
    assert (cfg.model.window_s, cfg.model.step_s) == (4.0, 1.0)
    assert cfg.features.n_features == 20
    # The training recipe chosen by bench/quality.py (FINDINGS.md).
    assert (cfg.model.arch, cfg.model.input_norm, cfg.training.schedule) == ("convstats", "window", "onecycle")
    assert cfg.augment.holdout_noise_fraction > 0 and cfg.gate.max_shortcut_drop == 0.05


def test_spira_v2_config_restores_the_published_recipe():
    root = Path(__file__).resolve().parents[3] / "configs"
    cfg = load_config(root / "spira-v2.yaml")
    assert (cfg.model.arch, cfg.model.dropout, cfg.model.fc_hidden, cfg.model.input_norm) == ("spiraconv_v2", 0.7, 100, "none")
    assert (cfg.training.lr, cfg.training.weight_decay, cfg.training.schedule) == (1e-3, 0.01, "noam")
    assert cfg.features.n_mfcc == 40  # SPIRA's front end


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"training.lr": -1})
    assert "training.lr" in str(err.value)
    assert "-1" in str(err.value)


def test_unknown_key_is_an_error_not_ignored(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  epoch: 3\n")  # typo for 'epochs'
    with pytest.raises(ConfigError, match=r"training\.epoch"):
        load_config(path)


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  epochs: 3\nfeatures:\n  kind: mel\n")
    cfg = load_config(path, {"training.batch_size": 8})
    assert cfg.training.epochs == 3 and cfg.training.batch_size == 8 and cfg.features.kind == "mel"


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"features.win_length": 2000}, "win_length"),
        ({"features.n_mfcc": 80}, "n_mfcc"),
        ({"augment.snr_db_min": 20, "augment.snr_db_max": 10}, "snr_db_min"),
        ({"audio.min_duration_s": 2.0}, "min_duration_s"),
        ({"features.sample_rate": 8000}, "features.sample_rate"),
        ({"split.eval_fraction": 0.5, "split.test_fraction": 0.45}, "eval_fraction"),
    ],
)
def test_cross_field_checks(overrides, field):
    with pytest.raises(ConfigError, match=field):
        build_config(overrides=overrides)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_parse_override():
    assert parse_override("training.epochs=5") == ("training.epochs", 5)
    assert parse_override("features.kind=mel") == ("features.kind", "mel")
    with pytest.raises(ConfigError):
        parse_override("training.epochs")


def test_digest_is_stable_and_section_scoped():
    a, b = SpiraConfig(), load_config(overrides={"gate.auc_margin": 0.05})
    assert a.digest() == SpiraConfig().digest()
    assert a.digest() != b.digest()
    assert a.digest("features", "training") == b.digest("features", "training")


def test_shipped_config_files_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "configs"
    assert load_config(root / "default.yaml") == SpiraConfig()  # the file documents the real defaults
    assert load_config(root / "fast.yaml").training.epochs == 8


@pytest.mark.parametrize("field,value", [("drift.alpha", 0), ("drift.alpha", 1.5), ("drift.min_clips", 2),
                                         ("drift.min_clips_per_class", 1), ("drift.major_tv", 2), ("drift.enabled", "maybe")])
def test_bad_drift_knobs_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"config field '{re.escape(field)}'"):
        load_config(None, {field: value})


def test_drift_knobs_do_not_change_what_model_is_trained():
    assert load_config(None, {"drift.alpha": 0.05}).digest(*TRAINING_SECTIONS) == load_config().digest(*TRAINING_SECTIONS)
