"""An unknown preset, loss or dataset name, wherever it comes from (a flag, a --config file, plain data,
a checkpoint's config, the models' own table), is one line that names the choices."""

from __future__ import annotations

import json

import pytest
import torch

from engine.checkpoint import CheckpointError, load_training_checkpoint
from engine.config import CONDITIONAL_PRESETS, LOSSES, NAMED_DATASETS, PRESETS, ConfigError, TrainConfig
from engine.losses import d_loss, g_loss
from engine.models import PRESET_TABLE, build_models
from tui_gan.cli import main

CHOICES = {"preset": [p for p in PRESETS if p != "auto"], "loss": list(LOSSES), "dataset": list(NAMED_DATASETS)}


def one_line_naming(text: str, names: list[str]) -> bool:
    return text.strip().count("\n") == 0 and all(name in text for name in names)


def test_the_models_table_has_every_preset_the_config_allows():
    assert set(PRESET_TABLE) == set(PRESETS) - {"auto"}
    assert {name for name, p in PRESET_TABLE.items() if p.conditional} == set(CONDITIONAL_PRESETS)


def test_a_preset_the_table_lacks_is_refused_not_built_as_dcgan():
    cfg = TrainConfig(dataset="synthetic", preset="dcgan-small")
    object.__setattr__(cfg, "preset", "resnet")  # past validation, as a name added to PRESETS alone would be
    with pytest.raises(ConfigError) as caught:
        build_models(cfg)
    assert one_line_naming(str(caught.value), CHOICES["preset"]) and "resnet" in str(caught.value)


def test_an_unknown_loss_names_the_losses():
    scores = torch.zeros(4)
    for call in (lambda: d_loss("kl", scores, scores), lambda: g_loss("kl", scores)):
        with pytest.raises(ConfigError) as caught:
            call()
        assert one_line_naming(str(caught.value), CHOICES["loss"])


@pytest.mark.parametrize("field, value", [("preset", "resnet"), ("loss", "kl")])
def test_plain_data_names_the_choices(field, value):
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict({field: value})
    assert one_line_naming(str(caught.value), CHOICES[field])


@pytest.mark.parametrize("flag, value", [("--preset", "resnet"), ("--loss", "kl")])
def test_a_flag_names_the_choices(flag, value, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--headless", "--dataset", "synthetic", flag, value])
    assert caught.value.code == 2
    assert one_line_naming(capsys.readouterr().err, CHOICES[flag.lstrip("-")])


@pytest.mark.parametrize("field, value", [("preset", "resnet"), ("loss", "kl"), ("dataset", "mnsit")])
def test_a_config_file_names_the_choices(field, value, tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"dataset": "synthetic", field: value}))
    assert main(["--headless", "--config", str(config), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert one_line_naming(err, CHOICES[field]) and value in err
    assert not (tmp_path / "runs").exists()  # refused before anything started


def test_a_checkpoint_whose_config_names_an_unknown_preset_is_one_clear_error(tmp_path):
    path = tmp_path / "step_00000010.pt"
    config = {**TrainConfig(dataset="synthetic").to_dict(), "preset": "resnet"}
    torch.save({"format": 1, "config": config, "trainer": {}, "hparam_history": []}, path)
    with pytest.raises(CheckpointError) as caught:
        load_training_checkpoint(path)
    assert one_line_naming(str(caught.value), CHOICES["preset"])
