"""Shared fixtures: a tiny Qwen2-VL built offline, real encoded videos, an S3 server on loopback, a local Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep model and hash caches inside the test run, never in the user's home.
os.environ.setdefault("TARA_BATCH_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "tara-batch-test-cache"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tara_batch.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """>= 20 real H.264 videos of mixed sizes and lengths."""
    from tara_batch.video.samples import write_sample_archive

    out = tmp_path_factory.mktemp("videos")
    write_sample_archive(out, n=22, seed=1)
    return out


@pytest.fixture(scope="session")
def s3_server():
    from tests.s3server import S3Server

    with S3Server() as srv:
        yield srv


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        # Metrics reported every second (default 10 s), so the telemetry tests need not wait long for a scrape.
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _system_config={"metrics_report_interval_ms": 1000})
    yield ray
    ray.shutdown()
