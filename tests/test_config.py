"""Run-config schema: unknown keys, wrong types, non-numbers and bad method options are
ConfigErrors that name the key."""
import re

import pytest

from harness.config import RunConfig, from_dict, load_config, to_dict
from harness.errors import ConfigError


def test_defaults_round_trip_through_dict():
    config = load_config()
    assert from_dict(RunConfig, to_dict(config)) == config
    assert config.data.crop == (64, 128)


def test_overrides_parse_yaml_values(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("seed: 3\ntrain:\n  iterations: 50\n")
    config = load_config(file, ["train.lr=0.01", "data.crop=[32, 48]", "method.options.lambda1=0.5"])
    assert (config.seed, config.train.iterations, config.train.lr) == (3, 50, 0.01)
    assert config.data.crop == (32, 48)
    assert config.method.options == {"lambda1": 0.5}


@pytest.mark.parametrize("overrides, key", [
    (["train.iterationz=5"], "train.iterationz"),
    (["bogus=1"], "bogus"),
    (["train.iterations=abc"], "train.iterations"),
    (["train.iterations=2.5"], "train.iterations"),
    (["train.lr=abc"], "train.lr"),
    (["train.lr=.nan"], "train.lr"),
    (["train.lr=.inf"], "train.lr"),
    (["data.flip=3"], "data.flip"),
    (["data.crop=[1, 2, 3]"], "data.crop"),
    (["data=5"], "data"),
])
def test_bad_keys_and_types_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, overrides)


def test_unknown_key_in_file_lists_valid_keys(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"train\.learning_rate.*train\.lr"):
        load_config(file)


def test_range_checks():
    for override, key in [("train.lr=-1", "train.lr"), ("train.optimizer=adam", "train.optimizer"),
                          ("data.batch_size=0", "data.batch_size"), ("train.amp=fp16", "train.amp")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(None, [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_variable_length_tuple_annotation():
    from harness.config import check_value

    assert check_value([1, -2, 3], tuple[int, ...], "k") == (1, -2, 3)
    assert check_value(None, tuple[int, ...] | None, "k") is None
    with pytest.raises(ConfigError, match=r"'k\[1\]'"):
        check_value([1, "x"], tuple[int, ...], "k")


@pytest.mark.parametrize("options, key", [
    ({"lambda1": -0.1}, "method.options.lambda1"),
    ({"lambda2": "lots"}, "method.options.lambda2"),
    ({"temperature": float("nan")}, "method.options.temperature"),
    ({"temperature": -1.0}, "method.options.temperature"),
    ({"stages": [1, "x"]}, r"method.options.stages\[1\]"),
])
def test_method_options_are_checked_by_type_and_sign(options, key):
    from harness.methods import method_options

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        method_options("heteroakd", None, options)


def test_valid_method_options_pass():
    from harness.methods import METHODS, method_options

    cls, resolved = method_options("heteroakd", None, {"lambda1": 0.5, "stages": [-2, -1]})
    assert cls is METHODS.get("heteroakd") and (resolved.lambda1, resolved.stages) == (0.5, (-2, -1))
    assert method_options("kd", None, {"temperature": 4})[1].temperature == 4  # int for a float


@pytest.mark.parametrize("key, value, choices", [
    ("projector", "linear", "'mlp', 'conv_bn_relu'"),
    ("reliability", "kl", "'bce', 'ce'"),
    ("kem_axis", "both", "'class', 'space'"),
])
def test_choice_options_list_their_values_from_the_type(key, value, choices):
    from harness.methods import build_distiller, method_options
    from harness.models.base import ModelInfo

    message = f"config key 'method.options.{key}' must be one of {choices}, got '{value}'"
    with pytest.raises(ConfigError, match=re.escape(message)):
        method_options("heteroakd", None, {key: value})
    info = ModelInfo("m", "cnn", 5, (8, 16), (4, 8), 16, 4)
    with pytest.raises(ConfigError, match=re.escape(message)):  # any caller of build_distiller
        build_distiller("heteroakd", info, info, options={key: value})


def test_train_choices_list_their_values():
    with pytest.raises(ConfigError, match=re.escape(
            "config key 'train.amp' must be one of 'auto', 'bf16', 'off', got 'fp16'")):
        load_config(None, ["train.amp=fp16"])
    with pytest.raises(ConfigError, match="train.channels_last.*'auto', 'on', 'off', got True"):
        load_config(None, ["train.channels_last=true"])


def test_yaml_reads_on_off_as_strings_and_exponents_as_numbers(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("train:\n  channels_last: on\n  amp: off\n  lr: 1e-4\n  weight_decay: 5E-4\n"
                    "data:\n  flip: false\n")
    config = load_config(file, ["train.grad_clip=1e1"])
    assert (config.train.channels_last, config.train.amp) == ("on", "off")
    assert config.train.lr == 1e-4 and config.train.weight_decay == 5e-4 and config.train.grad_clip == 10.0
    assert config.data.flip is False


def test_old_key_names_and_values_still_work_with_one_warning_each(caplog):
    with caplog.at_level("WARNING", logger="harness.config"):
        config = load_config(None, ["model.teacher_checkpoint=runs/t", "protocol=cirkd"])
    assert (config.model.teacher_model, config.protocol) == ("runs/t", "reference")
    assert [r.getMessage() for r in caplog.records] == [
        "config key 'model.teacher_checkpoint' is deprecated and goes in the next release; "
        "use 'model.teacher_model'",
        "protocol: 'cirkd' is deprecated and goes in the next release; use 'reference'"]
    with pytest.raises(ConfigError, match="one setting; keep only 'model.teacher_model'"):
        load_config(None, ["model.teacher_checkpoint=a", "model.teacher_model=b"])
