"""`convert`: Tarsier2/TARA (LLaVA layout) -> Qwen2-VL layout, proven against an independent load of the same weights."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tara_batch import __version__
from tara_batch.errors import ConfigError
from tara_batch.models.backend import TransformersEmbedder, l2_normalize
from tara_batch.models.convert import RECORD_FILE, convert_checkpoint
from tara_batch.models.profile import get_profile
from tara_batch.models.tiny_tarsier import TARSIER_CHAT_TEMPLATE, build_tiny_tarsier, load_tarsier_reference
from tara_batch.models.verify import verify_checkpoint

TEXTS = ["someone is folding a paper", "cut", "a person opens the door and walks in, then closes it behind them"]
# Written out here on purpose (not imported from convert.py): the test's own statement of the mapping.
EXPECTED_PREFIXES = {
    "vision_tower.": "model.visual.",
    "language_model.model.": "model.language_model.",
    "language_model.lm_head.": "lm_head.",
}


def _tensors(root: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in sorted(root.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():  # noqa: SIM118 -- safe_open handles are not dicts
                assert k not in out, f"{k} stored twice"
                out[k] = fh.get_tensor(k)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tarsier_dir(tmp_path_factory) -> Path:
    return build_tiny_tarsier(tmp_path_factory.mktemp("tarsier"), seed=0, shards=2)


@pytest.fixture(scope="module")
def report(tarsier_dir, tmp_path_factory):
    # 1 MB shards: the 2.3 MB tiny model must come out in several output shards (exercises the streaming writer).
    return convert_checkpoint(tarsier_dir, tmp_path_factory.mktemp("out") / "qwen2vl", max_shard_bytes=1 << 20)


@pytest.fixture(scope="module")
def embedder(report):
    return TransformersEmbedder(report.dst, get_profile(), threads=1)


@pytest.fixture(scope="module")
def reference(tarsier_dir):
    return load_tarsier_reference(tarsier_dir)


def _videos():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (8, 56, 84, 3), dtype=np.uint8), rng.integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)]


def _assert_same_hidden_states(embedder, reference, inputs):
    with torch.inference_mode():
        ours = embedder.model(**inputs, output_hidden_states=True, use_cache=False)
        ref = reference.model(**inputs, output_hidden_states=True, use_cache=False)
    assert len(ours.hidden_states) == len(ref.hidden_states) == 3  # embeddings + 2 layers
    for layer, (a, b) in enumerate(zip(ours.hidden_states, ref.hidden_states, strict=True)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=f"hidden state {layer} differs")
    torch.testing.assert_close(ours.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=0)
    return ref


# --- the converted checkpoint is the same model -------------------------------------------------------------------

def test_report_and_layout(report, tarsier_dir):
    assert not report.noop and report.src == tarsier_dir.resolve()
    assert report.shards >= 3 and report.tensors == 58 and report.dropped == []
    assert report.skipped_files == ["README.md", "tara_batch_tiny.json"]
    config = json.loads((report.dst / "config.json").read_text())
    assert config["model_type"] == "qwen2_vl" and config["architectures"] == ["Qwen2VLForConditionalGeneration"]
    assert config["tie_word_embeddings"] is False and config["dtype"] == "bfloat16"
    assert config["text_config"]["rope_parameters"]["mrope_section"] == [8, 12, 12]
    assert config["vision_config"]["depth"] == 2  # the top-level vision_config, not text_config's nested default
    src_cfg = json.loads((tarsier_dir / "config.json").read_text())["text_config"]
    for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        assert config[name] == src_cfg[name]


def test_index_total_size_and_each_key_once(report):
    index = json.loads((report.dst / "model.safetensors.index.json").read_text())
    weight_map = index["weight_map"]
    shards = sorted(report.dst.glob("*.safetensors"))
    assert len(shards) == report.shards and not (report.dst / "model.safetensors").exists()
    seen: dict[str, str] = {}
    total = 0
    for f in shards:
        assert f.stat().st_size <= (1 << 20) + 64 * 1024  # max_shard_bytes + header
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():  # noqa: SIM118
                assert k not in seen
                seen[k] = f.name
                t = fh.get_tensor(k)
                total += t.numel() * t.element_size()
    assert seen == weight_map
    assert index["metadata"]["total_size"] == total == report.bytes


def test_every_tensor_copied_bit_for_bit(report, tarsier_dir):
    src, out = _tensors(tarsier_dir), _tensors(report.dst)
    assert len(src) == len(out)
    for key, tensor in src.items():
        (old,) = [p for p in EXPECTED_PREFIXES if key.startswith(p)]
        new = EXPECTED_PREFIXES[old] + key[len(old):]
        assert out[new].dtype == tensor.dtype == torch.bfloat16
        assert torch.equal(out[new], tensor), key


def test_text_hidden_states_equal_reference(embedder, reference):
    inputs = embedder.text_inputs(TEXTS)
    _assert_same_hidden_states(embedder, reference, inputs)
    # and the pooled embedding the embedder returns is the reference's final-norm state at the last position
    mask = inputs["attention_mask"]
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0).unsqueeze(0).expand(3, -1, -1)
    with torch.inference_mode():
        ref = reference.model(**inputs, position_ids=pos, use_cache=False).last_hidden_state[:, -1]
    np.testing.assert_allclose(embedder.embed_texts(TEXTS), l2_normalize(ref.numpy()), atol=1e-5)


def test_video_hidden_states_equal_reference(embedder, reference):
    from tara_batch.models.backend import mrope_positions

    videos = _videos()
    inputs = embedder.video_inputs(videos)
    video_token = embedder.model.config.video_token_id
    assert "pixel_values_videos" in inputs and (inputs["input_ids"] == video_token).sum() > 0
    # both models get the original Qwen2-VL positions, as the embedder passes them
    inputs["position_ids"] = mrope_positions(inputs["input_ids"], inputs["attention_mask"], inputs["video_grid_thw"],
                                             video_token, embedder.model.config.vision_config.spatial_merge_size)
    ref = _assert_same_hidden_states(embedder, reference, inputs)
    np.testing.assert_allclose(embedder.embed_videos(videos), l2_normalize(ref.last_hidden_state[:, -1].numpy()),
                               atol=1e-5)


def test_processor_tokenizer_and_template(report):
    from transformers import AutoProcessor, Qwen2VLProcessor

    processor = AutoProcessor.from_pretrained(str(report.dst), local_files_only=True)
    assert isinstance(processor, Qwen2VLProcessor)
    for proc in (processor.image_processor, processor.video_processor):
        assert proc.size["shortest_edge"] == 3136 and proc.size["longest_edge"] == 460_800
    assert processor.chat_template == TARSIER_CHAT_TEMPLATE
    assert (report.dst / "chat_template.jinja").read_text() == TARSIER_CHAT_TEMPLATE
    assert not (report.dst / "chat_template.json").exists() and not (report.dst / "preprocessor_config.json").exists()
    tok_cfg = json.loads((report.dst / "tokenizer_config.json").read_text())
    assert tok_cfg["processor_class"] == "Qwen2VLProcessor"
    assert not (report.dst / "README.md").exists()


def test_hashes_recorded_match_files(report, tarsier_dir):
    record = json.loads((report.dst / RECORD_FILE).read_text())
    assert record["source"] == str(tarsier_dir.resolve()) and record["tara_batch_version"] == __version__
    assert record["tensors"] == report.tensors and record["shards"] == report.shards and record["created_utc"]
    src_files = sorted(p.name for p in tarsier_dir.iterdir() if p.is_file())
    assert sorted(record["source_sha256"]) == src_files
    assert all(record["source_sha256"][n] == _sha(tarsier_dir / n) for n in src_files)
    out_files = sorted(p.name for p in report.dst.iterdir() if p.is_file() and p.name != RECORD_FILE)
    assert sorted(record["output_sha256"]) == out_files
    assert all(record["output_sha256"][n] == _sha(report.dst / n) for n in out_files)
    assert record["source_sha256"] == report.source_sha256 and record["output_sha256"] == report.output_sha256


# --- what convert refuses or skips ----------------------------------------------------------------------------------

def test_converting_a_converted_checkpoint_is_a_noop(report, tmp_path):
    again = convert_checkpoint(report.dst, tmp_path / "again")
    assert again.noop and "already in the Qwen2-VL layout" in again.message and "use it directly" in again.message
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize("config, named", [
    ({"model_type": "mllama", "architectures": ["MllamaForConditionalGeneration"]}, "'mllama'"),
    ({"model_type": "llava", "text_config": {"model_type": "llama"}}, "'llama'"),  # Tarsier v1 / plain LLaVA
])
def test_other_model_types_refused(tmp_path, config, named):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as err:
        convert_checkpoint(src, tmp_path / "dst")
    assert err.value.field == "convert.src" and named in err.value.message
    assert not (tmp_path / "dst").exists()


def _copy_with_extra_tensors(tarsier_dir: Path, dst: Path, extra: dict[str, torch.Tensor]) -> Path:
    shutil.copytree(tarsier_dir, dst)
    save_file(extra, str(dst / "extra.safetensors"), metadata={"format": "pt"})
    index_path = dst / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"].update({k: "extra.safetensors" for k in extra})
    index["metadata"]["total_size"] += sum(t.numel() * t.element_size() for t in extra.values())
    index_path.write_text(json.dumps(index))
    return dst


def test_unknown_tensor_names_refused(tarsier_dir, tmp_path):
    src = _copy_with_extra_tensors(tarsier_dir, tmp_path / "src", {
        "mystery_head.weight": torch.zeros(2, 2), "language_model.model.layers.0.extra": torch.zeros(1),
        "vision_model.encoder.weight": torch.zeros(1),
    })
    with pytest.raises(ConfigError) as err:
        convert_checkpoint(src, tmp_path / "dst")
    # the prefix-unknown names are listed; the one under a known prefix is caught by the model check
    assert err.value.field == "convert.src" and "2 tensor(s)" in err.value.message
    assert "mystery_head.weight" in err.value.message and "vision_model.encoder.weight" in err.value.message
    assert not (tmp_path / "dst").exists() and not list(tmp_path.glob(".dst.*"))

    src2 = _copy_with_extra_tensors(tarsier_dir, tmp_path / "src2", {"language_model.model.layers.0.extra": torch.zeros(1)})
    with pytest.raises(ConfigError, match=r"unexpected.*model\.language_model\.layers\.0\.extra"):
        convert_checkpoint(src2, tmp_path / "dst2")
    assert not (tmp_path / "dst2").exists()


def test_unused_projector_tensors_dropped(tarsier_dir, tmp_path):
    src = _copy_with_extra_tensors(tarsier_dir, tmp_path / "src", {"multi_modal_projector.linear_1.weight": torch.ones(2)})
    out = convert_checkpoint(src, tmp_path / "dst")  # default shard size: a single model.safetensors, no index
    assert out.dropped == ["multi_modal_projector.linear_1.weight"] and out.tensors == 58 and out.shards == 1
    assert (tmp_path / "dst" / "model.safetensors").exists()
    assert not (tmp_path / "dst" / "model.safetensors.index.json").exists()


def test_non_empty_destination_refused_unless_overwrite(tarsier_dir, tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError) as err:
        convert_checkpoint(tarsier_dir, dst)
    assert err.value.field == "convert.dst" and "not empty" in err.value.message
    assert (dst / "keep.txt").read_text() == "mine" and sorted(p.name for p in dst.iterdir()) == ["keep.txt"]
    out = convert_checkpoint(tarsier_dir, dst, overwrite=True)
    assert not out.noop and not (dst / "keep.txt").exists() and (dst / "config.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not convert_checkpoint(tarsier_dir, empty, verify=False).noop  # an existing empty directory is fine


def test_verify_catches_a_config_that_does_not_match_the_weights(report, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(report.dst, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = 1
    config["text_config"]["layer_types"] = ["full_attention"]
    config["vision_config"]["mlp_ratio"] = 4
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError) as err:
        verify_checkpoint(broken, full_load=False)
    assert "unexpected" in err.value.message and "model.language_model.layers.1" in err.value.message
    assert "shape mismatches" in err.value.message and "mlp.fc1" in err.value.message
