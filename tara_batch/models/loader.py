"""Build an embedder from plain, picklable settings: what a Ray actor receives and calls once in its __init__."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tara_batch.io.s3 import S3Options
from tara_batch.io.uris import is_s3, split_s3
from tara_batch.models.profile import ModelProfile


@dataclass(frozen=True)
class EmbedderSpec:
    model_uri: str
    profile: ModelProfile
    backend: str = "auto"
    device: str = "auto"
    threads: int | None = 1
    s3: S3Options | None = None

    def __call__(self):
        from tara_batch.models.backend import TransformersEmbedder
        from tara_batch.models.checkpoint import resolve_checkpoint
        from tara_batch.models.vllm_backend import choose_backend

        path = resolve_checkpoint(self.model_uri, self.s3)
        # Resolved here, inside the actor: that is where the GPU is (the driver may have none).
        if choose_backend(self.backend) == "vllm":
            from tara_batch.models.vllm_backend import VLLMEmbedder

            return VLLMEmbedder(path, self.profile, device=self.device, threads=self.threads)
        return TransformersEmbedder(path, self.profile, device=self.device, threads=self.threads)


def checkpoint_fingerprint(model_uri: str, s3: S3Options | None = None) -> tuple[str, dict[str, Any]]:
    """(content hash, config.json) of a checkpoint without loading weights.

    Local: sha256 over file names and bytes. s3://: sha256 over (key, size, ETag) of every object, so the driver
    never downloads 16 GB of weights just to name the model version (ETags are content digests).
    """
    from tara_batch.models.checkpoint import check_config, content_hash, resolve_checkpoint

    if not is_s3(model_uri):
        path = resolve_checkpoint(model_uri)
        return content_hash(path), json.loads((path / "config.json").read_text())
    s3 = s3 or S3Options()
    bucket, prefix = split_s3(model_uri.rstrip("/") + "/")
    client = s3.boto3_client()
    objs = [
        (o["Key"][len(prefix):], o["Size"], o["ETag"].strip('"'))
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    if not objs:
        from tara_batch.errors import ConfigError

        raise ConfigError("model.path", f"no objects under {model_uri}; check the prefix and credentials")
    config = json.loads(client.get_object(Bucket=bucket, Key=prefix + "config.json")["Body"].read())
    check_config(config, model_uri)
    return hashlib.sha256(json.dumps(sorted(objs)).encode()).hexdigest(), config


def embedding_dim(config: dict[str, Any]) -> int:
    text = config.get("text_config") or config
    return int(text["hidden_size"])
