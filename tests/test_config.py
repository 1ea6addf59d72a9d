"""Configuration: strict validation at load, with the file, key, value and expectation named."""

import json
import shutil

import pytest

from hmvnet.config import (
    LabelInterpolation,
    PostprocessPreset,
    SegmentationConfig,
    SurvivalConfig,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from hmvnet.errors import ConfigError
from tests.helpers import REPO


def _write(tmp_path, data):
    (tmp_path / "config.json").write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("postprocess", "threshold", "0.5", "valid number"),
        ("postprocess", "output_interpolation", "cubic", "'nearest' or 'linear'"),
        ("postprocess", "preset", "best", "'paper', 'label_aware' or 'primary_mass'"),
        ("model", "feature_size", 12.5, "valid integer"),
        ("model", "architecture", "unet", "'hmvnet' or 'swinunetr'"),
        ("inference", "roi_size", [64, 64], "Field required"),
        ("preprocess", "spacing", [2, 2, 2], "Unexpected keyword argument"),
    ],
)
def test_wrong_values_fail_at_load_naming_file_key_and_value(tmp_path, section, key, value, expected):
    folder = _write(tmp_path, {section: {key: value}})
    with pytest.raises(ConfigError) as err:
        load_config(SegmentationConfig, folder)
    message = str(err.value)
    assert str(folder / "config.json") in message
    assert f"{section}.{key}" in message and repr(value) in message
    assert expected in message


def test_survival_fold_rule_is_validated_and_read(tmp_path):
    with pytest.raises(ConfigError, match="fold_rule"):
        load_config(SurvivalConfig, _write(tmp_path, {"fold_rule": "max"}))
    assert load_config(SurvivalConfig, _write(tmp_path, {"fold_rule": "mean"})).fold_rule == "mean"


def test_not_json_and_missing_file_are_config_errors(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(SegmentationConfig, tmp_path)
    with pytest.raises(ConfigError, match=r"no config\.json"):
        load_config(SegmentationConfig, tmp_path / "absent")


def test_round_trip_keeps_every_field_including_training(tmp_path):
    config = from_dict(
        SegmentationConfig, {"postprocess": {"preset": "paper"}, "train": {"epochs": 7, "lr": 1}}
    )
    assert config.postprocess.preset is PostprocessPreset.PAPER and config.train.lr == 1.0
    save_config(config, tmp_path)
    again = load_config(SegmentationConfig, tmp_path)
    assert again == config and to_dict(again)["train"]["epochs"] == 7


def test_shipped_configs_load_and_record_their_training(tmp_path):
    seg = load_config(SegmentationConfig, REPO / "weights" / "segmentation")
    assert seg.postprocess.output_interpolation is LabelInterpolation.LINEAR
    assert seg.train.epochs == 210  # the stage-2 run (configs/demo_segmentation_finetune.json)
    assert load_config(SurvivalConfig, REPO / "weights" / "survival").fold_rule == "median"
    shutil.copy(REPO / "weights" / "segmentation" / "config.json", tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    data["postprocess"]["threshold"] = "0.5"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"postprocess\.threshold"):
        load_config(SegmentationConfig, tmp_path)
