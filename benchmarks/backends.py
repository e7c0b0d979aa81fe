"""Backend benchmark: embeddings/s of each installed backend on the tiny model, and the Tarsier2-7B cost model.

Measures, in one run on this machine, text and video throughput of the transformers backend (and of vLLM when it is
importable: run this script from the vLLM environment, see README), then prints the visual tokens, FLOPs and bytes
per video for Tarsier2-7B under the configured profile and the videos/s ceiling on one H100 (790 TFLOP/s bf16 dense).

    python benchmarks/backends.py                       # tiny-model throughput + ceiling table, JSON to stdout file
    python benchmarks/backends.py --ceiling-only        # just the arithmetic
    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python benchmarks/backends.py --out bench-backends.json

Tiny-model numbers measure engine overhead (tokenise, preprocess, schedule), not model FLOPs: the tiny model has
~1 M parameters. Use them as ratios between backends, never as a prediction for 7B.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tara_batch.models.cost import video_cost, videos_per_second_ceiling
from tara_batch.models.profile import get_profile

H100_BF16_DENSE = 790e12
RESOLUTIONS = {"360p": (360, 640), "480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}
TEXTS = ["someone is folding a paper", "a person opens the door and walks in", "cutting a paper",
         "the dog runs into the room and jumps onto the sofa", "nobody is in the kitchen", "a man puts down a cup",
         "a red circle moves from left to right", "she did not close the box"]


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (first call compiles / allocates)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def measure(backend: str, model_dir: Path, videos: list[np.ndarray], repeats: int) -> dict:
    profile = get_profile()
    if backend == "transformers":
        from tara_batch.models.backend import TransformersEmbedder

        emb = TransformersEmbedder(model_dir, profile, threads=1)
    else:
        from tara_batch.models.vllm_backend import VLLMEmbedder

        emb = VLLMEmbedder(model_dir, profile)
    texts = TEXTS * 4  # 32 sentences per call
    t_text = _time(lambda: emb.embed_texts(texts), repeats)
    t_video = _time(lambda: emb.embed_videos(videos), repeats)
    return {"backend": backend, "text_batch": len(texts), "texts_per_s": len(texts) / t_text,
            "video_batch": len(videos), "videos_per_s": len(videos) / t_video}


def ceiling_table(num_frames: int, max_pixels: int, duplicate: bool) -> list[dict]:
    rows = []
    for name, (h, w) in RESOLUTIONS.items():
        c = video_cost(h, w, num_frames, duplicate_frames=duplicate, max_pixels=max_pixels)
        rows.append({"resolution": name, "frame_hw": c.frame_hw, "visual_tokens": c.visual_tokens,
                     "tflop_per_video": c.total_flops / 1e12, "vision_tflop": c.vision_flops / 1e12,
                     "llm_tflop": c.llm_flops / 1e12, "activation_gb": c.activation_bytes / 1e9,
                     "weight_gb": c.weight_bytes / 1e9,
                     "h100_videos_per_s_peak": videos_per_second_ceiling(c, H100_BF16_DENSE),
                     "h100_videos_per_s_at_40pct_mfu": videos_per_second_ceiling(c, H100_BF16_DENSE, 0.4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ceiling-only", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frames", type=int, default=get_profile().num_frames)
    p.add_argument("--out", default="bench-backends.json")
    args = p.parse_args(argv)
    profile = get_profile(num_frames=args.frames)
    result: dict = {"profile": {"num_frames": profile.num_frames, "max_pixels": profile.max_pixels,
                                "duplicate_frames": profile.duplicate_frames}}
    if not args.ceiling_only:
        from tara_batch.models.tiny import build_tiny_model
        from tara_batch.video.registry import get_sampler
        from tara_batch.video.samples import write_sample_archive

        tmp = Path(tempfile.mkdtemp(prefix="tara-bench-"))
        model_dir = build_tiny_model(tmp / "model")
        paths = write_sample_archive(tmp / "videos", n=8, seed=0)
        sampler = get_sampler("pyav")
        videos = [sampler.sample(p.read_bytes(), profile.num_frames, profile.max_pixels).frames for p in paths]
        backends = ["transformers"]
        try:
            import vllm  # noqa: F401

            backends.append("vllm")
        except ImportError:
            print("vllm not importable here: measuring transformers only", file=sys.stderr)
        result["tiny_model"] = [measure(b, model_dir, videos, args.repeats) for b in backends]
        print(f"\n{'backend':<13} {'texts/s (batch 32)':>19} {'videos/s (batch 8)':>19}")
        for r in result["tiny_model"]:
            print(f"{r['backend']:<13} {r['texts_per_s']:>19.1f} {r['videos_per_s']:>19.1f}")
    result["tarsier2_7b"] = ceiling_table(profile.num_frames, profile.max_pixels, profile.duplicate_frames)
    print(f"\nTarsier2-7B, {profile.num_frames} frames, max_pixels {profile.max_pixels}, one H100 "
          f"({H100_BF16_DENSE / 1e12:.0f} TFLOP/s bf16 dense):")
    print(f"{'res':<6} {'frame':>9} {'vis tok':>8} {'TFLOP/vid':>10} {'vision':>7} {'LLM':>6} {'act GB':>7} "
          f"{'vid/s peak':>11} {'vid/s @40%':>11}")
    for r in result["tarsier2_7b"]:
        print(f"{r['resolution']:<6} {r['frame_hw'][0]:>4}x{r['frame_hw'][1]:<4} {r['visual_tokens']:>8} "
              f"{r['tflop_per_video']:>10.1f} {r['vision_tflop']:>7.1f} {r['llm_tflop']:>6.1f} "
              f"{r['activation_gb']:>7.2f} {r['h100_videos_per_s_peak']:>11.2f} "
              f"{r['h100_videos_per_s_at_40pct_mfu']:>11.2f}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
