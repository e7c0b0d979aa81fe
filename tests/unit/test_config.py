"""Config mistakes fail at start with a message that names the field and the fix."""

from __future__ import annotations

import pytest

from tara_batch.config import EmbedJobConfig, load_config, parse_overrides
from tara_batch.errors import ConfigError

BASE = {"input": {"source": "/videos"}, "model": {"path": "/m"}, "output": {"table": "/db/videos"}}


def test_defaults_and_overrides(tmp_path):
    yml = tmp_path / "job.yaml"
    yml.write_text("decode:\n  backend: decord\nprofile:\n  num_frames: 16\n")
    cfg = load_config(EmbedJobConfig, yml, ["embed.batch_size=3", "input.extensions=[.mp4]"], flags=BASE)
    assert cfg.decode.backend == "decord" and cfg.profile.num_frames == 16
    assert cfg.embed.batch_size == 3 and cfg.input.extensions == (".mp4",)
    assert cfg.profile.max_pixels == 460_800  # untouched defaults stay the tara profile's


def test_key_value_beats_yaml_beats_nothing(tmp_path):
    yml = tmp_path / "job.yaml"
    yml.write_text("decode:\n  batch_size: 7\n")
    assert load_config(EmbedJobConfig, yml, ["decode.batch_size=2"], flags=BASE).decode.batch_size == 2


@pytest.mark.parametrize(
    ("overrides", "field", "hint"),
    [
        (["decode.backend=opencv"], "decode.backend", "pyav"),
        (["decode.batch_size=0"], "decode.batch_size", "> 0"),
        (["decode.batchsize=4"], "decode.batchsize", "valid fields"),
        (["embed.batch_size=four"], "embed.batch_size", "integer"),
        (["profile.num_frames=0"], "profile.num_frames", ">= 1"),
        (["output.index=sometimes"], "output.index", "auto"),
        (["s3.access_key_id=AKIA"], "s3.secret_access_key", "both"),
        (["s3.endpoint_url=localhost:9000"], "s3.endpoint_url", "http://"),
        (["input.manifest=/m.csv"], "input.source", "exactly one"),
        (["nonsense"], "nonsense", "section.field=value"),
    ],
)
def test_errors_name_field_and_fix(overrides, field, hint):
    with pytest.raises(ConfigError) as err:
        load_config(EmbedJobConfig, None, overrides, flags=BASE)
    assert err.value.field == field
    assert hint in str(err.value)


def test_missing_required_sections_explain_flags():
    with pytest.raises(ConfigError, match=r"--model"):
        load_config(EmbedJobConfig, None, [], flags={"input": {"source": "/v"}, "output": {"table": "/d/t"}})
    with pytest.raises(ConfigError, match=r"--table"):
        load_config(EmbedJobConfig, None, [], flags={"input": {"source": "/v"}, "model": {"path": "/m"}})


def test_secrets_are_masked_in_dumps():
    from tara_batch.config import dumps

    cfg = load_config(EmbedJobConfig, None, ["s3.access_key_id=AKIAEXAMPLE", "s3.secret_access_key=sup3rs3cret"],
                      flags=BASE)
    text = dumps(cfg) + repr(cfg)
    assert "sup3rs3cret" not in text and "AKIAEXAMPLE" not in text


def test_parse_overrides_types():
    assert parse_overrides(["a.b=1", "a.c=true", "d=[x, y]", "e=hello"]) == {
        "a": {"b": 1, "c": True}, "d": ["x", "y"], "e": "hello"}


def test_shipped_configs_load():
    from pathlib import Path

    for yml in sorted(Path(__file__).resolve().parents[2].joinpath("ray_jobs").glob("embed*.yaml")):
        cfg = load_config(EmbedJobConfig, yml)
        assert cfg.output.table


def test_config_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(ConfigError("decode.backend", "must be pyav")))
    assert (err.field, err.message) == ("decode.backend", "must be pyav")


def test_float_fields_accept_yaml_exponent_strings():
    from tara_batch.config import FailuresConfig, build

    assert build(FailuresConfig, {"max_rate": "5e-1"}).max_rate == 0.5
    with pytest.raises(ConfigError, match="number"):
        build(FailuresConfig, {"max_rate": "half"})


def test_toyworld_yaml_is_the_recipe_default():
    import dataclasses
    from pathlib import Path

    from tara_batch.toyworld.recipe import RecipeConfig

    path = Path(__file__).resolve().parents[2] / "ray_jobs" / "toyworld.yaml"
    assert dataclasses.asdict(load_config(RecipeConfig, path)) == dataclasses.asdict(RecipeConfig())
