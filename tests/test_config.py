import json
import math

import pytest

from engine.config import LIVE_HYPERPARAMS, ConfigError, TrainConfig


@pytest.mark.parametrize(
    "field,value",
    [
        ("lr_g", -1e-3),
        ("lr_g", 0.0),
        ("lr_d", math.nan),
        ("lr_d", math.inf),
        ("lr_d", "fast"),
        ("beta1", 1.0),
        ("beta2", -0.1),
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("d_steps", 0),
        ("label_smoothing", 0.7),
        ("preset", "resnet"),
        ("loss", "kl"),
        ("device", "tpu"),
        ("device", "cuda:"),
        ("device", "cuda:a"),
        ("deterministic", "yes"),
        ("sample_every_s", -2.0),
        ("checkpoint_every_s", math.inf),
        ("quality_share", 0.0),
        ("judge_share", 2.0),
        ("amp", "fp8"),
        ("steps", 0),
        ("latent_dim", True),
        ("g_hidden", (0,)),
        ("log_every", -5),
        ("epochs", -1.0),
        ("dataset", ""),
        ("d_mbstd", 1),
        ("d_mbstd", True),
        ("d_mbstd", 4.0),
        ("diff_augment_cutout", 0.9),
        ("mode_seeking", -1.0),
        ("g_class_embed", 0),
    ],
)
def test_invalid_values_are_refused_with_field_value_and_rule(field, value):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    message = str(info.value)
    assert info.value.field == field
    assert field in message and repr(value) in message
    assert "not allowed" in message


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        TrainConfig(device="cpu", amp="fp16")


def test_cuda_n_and_deterministic_are_config_values():
    cfg = TrainConfig(device="cuda:1", deterministic=True)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # A run folder written before these fields existed still loads, with the defaults.
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("deterministic", "sample_every_s", "quality_share")}
    assert TrainConfig.from_dict(old).deterministic is False


def test_defaults_are_valid_and_round_trip_through_a_file(tmp_path):
    cfg = TrainConfig(g_hidden=[64, 32], lr_g=1e-4, dataset="fashion-mnist")
    path = tmp_path / "config.json"
    cfg.save(path)
    assert json.loads(path.read_text())["g_hidden"] == [64, 32]
    loaded = TrainConfig.load(path)
    assert loaded == cfg and loaded.g_hidden == (64, 32)


def test_unknown_keys_and_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="must be JSON"):
        TrainConfig.load(bad)
    with pytest.raises(ConfigError, match="could not be read"):
        TrainConfig.load(tmp_path / "missing.json")


def test_live_hyperparams_change_makes_a_new_validated_config():
    cfg = TrainConfig()
    new = cfg.with_hyperparams(lr_g=1e-4, d_steps=2)
    assert (new.lr_g, new.d_steps, cfg.lr_g) == (1e-4, 2, TrainConfig().lr_g)
    assert set(new.hyperparams()) == set(LIVE_HYPERPARAMS)
    with pytest.raises(ConfigError, match="lr_d"):
        cfg.with_hyperparams(lr_d=-1.0)
    with pytest.raises(ConfigError, match="can change during a run"):
        cfg.with_hyperparams(preset="mlp")


def test_a_users_config_file_takes_todays_defaults_and_a_runs_saved_one_its_legacy_values(tmp_path):
    from engine.config import LEGACY_VALUES
    from tui_gan.options import parse_options

    partial = tmp_path / "mine.json"
    partial.write_text(json.dumps({"lr_g": 1e-4}))
    cfg = parse_options(["--config", str(partial), "--dataset", "synthetic"]).config
    assert cfg.lr_g == 1e-4
    assert {k: getattr(cfg, k) for k in LEGACY_VALUES} == {k: getattr(TrainConfig(), k) for k in LEGACY_VALUES}
    saved = TrainConfig.load(partial)  # read as a run folder's config.json
    assert {k: getattr(saved, k) for k in LEGACY_VALUES} == LEGACY_VALUES
