"""The CLI's model commands: Tarsier2 layout -> convert -> a checkpoint the embedder loads."""

from __future__ import annotations

import pytest

from tara_batch.cli import main


def test_convert_via_cli_then_embed_loads(tmp_path, capsys):
    from tara_batch.models.backend import TransformersEmbedder
    from tara_batch.models.profile import get_profile

    src, dst = tmp_path / "tarsier", tmp_path / "qwen"
    assert main(["-q", "make-tiny-model", str(src), "--layout", "tarsier2"]) == 0
    # The unconverted layout is refused with a pointer to `convert`.
    from tara_batch.errors import ConfigError
    from tara_batch.models.checkpoint import resolve_checkpoint

    with pytest.raises(ConfigError, match="tara-batch convert"):
        resolve_checkpoint(str(src))
    assert main(["-q", "convert", str(src), str(dst)]) == 0
    assert (dst / "tara_batch_convert.json").exists()
    emb = TransformersEmbedder(resolve_checkpoint(str(dst)), get_profile())
    assert emb.embed_texts(["a cat"]).shape == (1, 128)
    capsys.readouterr()
    assert main(["-q", "convert", str(dst), str(tmp_path / "again")]) == 0
    assert "already in the Qwen2-VL layout" in capsys.readouterr().out
    assert not (tmp_path / "again").exists()


def test_unknown_override_exits_2(tmp_path, capsys):
    assert main(["-q", "embed", "--input", str(tmp_path), "--model", str(tmp_path), "--table",
                 str(tmp_path / "db" / "t"), "decode.nope=1"]) == 2
    assert "decode.nope" in capsys.readouterr().err


def test_backend_choice_without_vllm(monkeypatch):
    import importlib.util

    from tara_batch.errors import ConfigError
    from tara_batch.models import vllm_backend

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert vllm_backend.choose_backend("auto") == "transformers"
    assert vllm_backend.choose_backend("transformers") == "transformers"
    with pytest.raises(ConfigError, match="model.backend"):
        vllm_backend.choose_backend("vllm")


def test_smoke_runs_and_golden_check_can_fail(tiny_model_dir, sample_dir, capsys):
    video = str(sorted(sample_dir.glob("*.mp4"))[0])
    assert main(["-q", "smoke", "--model", str(tiny_model_dir), "--video", video, "--backends", "transformers"]) == 0
    assert "SMOKE: PASS" in capsys.readouterr().out
    # a random tiny model cannot reproduce TARA's published cosines: the check must say FAIL
    assert main(["-q", "smoke", "--model", str(tiny_model_dir), "--video", video, "--golden",
                 "--backends", "transformers"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  golden cosine 'someone is folding a paper'" in out and "SMOKE: FAIL" in out


def test_eval_overrides_after_annotations_are_handed_back():
    from tara_batch.cli import split_overrides

    files, overrides = split_overrides(["s3://b/std.csv", "/data/a=b/neg.csv", "s3.endpoint_url=http://h:9",
                                        "decode.segment_s=2", "embed.batch_size=4"])
    assert files == ["s3://b/std.csv", "/data/a=b/neg.csv"]
    assert overrides == ["s3.endpoint_url=http://h:9", "decode.segment_s=2", "embed.batch_size=4"]
