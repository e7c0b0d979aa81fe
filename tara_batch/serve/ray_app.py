"""The query service on Ray Serve: the same FastAPI app as `tara-batch serve` behind a Serve ingress, with the query
embeddings computed by their own deployment (one GPU each, or CPUs; autoscaled).

    serve run tara_batch.serve.ray_app:build_app table=s3://index/index.lancedb/videos embedder_num_gpus=1
    # KubeRay: deploy/kuberay/base/rayservice.yaml (serveConfigV2 imports this module's build_app)

    SearchIngress (FastAPI, `serve/app.py`)  --handle-->  QueryEmbedder replicas (the model, loaded once each)
      vector search in LanceDB, thumbnails,             text / video / composed query vectors
      media, status, the page

The ingress keeps the text-query cache; the embedder replicas hold the model. `build_app(args)` takes the flat
`args` mapping of a Serve config (every `ServeAppConfig` field), validated like any job config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tara_batch.errors import ConfigError


@dataclass(frozen=True)
class ServeAppConfig:
    table: str = ""
    model: str | None = None
    version: str | None = None
    token_env: str = "TARA_BATCH_TOKEN"  # the token is read from this environment variable, never from the config
    host: str = "0.0.0.0"  # Serve's proxy binds; the token is then required
    embedder_num_cpus: float = 1.0
    embedder_num_gpus: float = 0.0
    embedder_min_replicas: int = 1
    embedder_max_replicas: int = 4
    embedder_target_ongoing_requests: float = 4.0
    ingress_num_cpus: float = 0.5
    ingress_min_replicas: int = 1
    ingress_max_replicas: int = 2
    max_upload_mb: float = 64.0

    def __post_init__(self) -> None:
        if not self.table:
            raise ConfigError("table", "set the index to serve: table=s3://bucket/index.lancedb/videos")
        for prefix in ("embedder", "ingress"):
            lo, hi = getattr(self, f"{prefix}_min_replicas"), getattr(self, f"{prefix}_max_replicas")
            if not 1 <= lo <= hi:
                raise ConfigError(f"{prefix}_min_replicas", f"need 1 <= min_replicas <= max_replicas, got {lo}, {hi}")
        if self.embedder_num_cpus <= 0 and self.embedder_num_gpus <= 0:
            raise ConfigError("embedder_num_cpus", "the embedder needs some CPU or GPU")


def app_config(args: dict[str, Any] | None) -> ServeAppConfig:
    from tara_batch.config import build

    return build(ServeAppConfig, dict(args or {}))


class RemoteEmbedder:
    """What the ingress's SearchSession calls instead of a local model: the QueryEmbedder deployment's handle."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def embed_texts(self, texts):
        return self.handle.embed_texts.remote(list(texts)).result()

    def embed_videos(self, videos):
        return self.handle.embed_videos.remote(list(videos)).result()

    def embed_composed(self, videos, edits):
        return self.handle.embed_composed.remote(list(videos), list(edits)).result()


def _service_config(cfg: ServeAppConfig):
    import os

    from tara_batch.serve.app import ServiceConfig

    return ServiceConfig(table=cfg.table, model=cfg.model, version=cfg.version, host=cfg.host,
                         token=os.environ.get(cfg.token_env) or None, max_upload_bytes=int(cfg.max_upload_mb * (1 << 20)))


def build_app(args: dict[str, Any] | None = None):
    """The Serve application: `serve run tara_batch.serve.ray_app:build_app key=value ...` or a Serve config's
    `import_path` with `args`."""
    from ray import serve

    cfg = app_config(args)

    @serve.deployment(name="QueryEmbedder", ray_actor_options={"num_cpus": cfg.embedder_num_cpus,
                                                               "num_gpus": cfg.embedder_num_gpus},
                      autoscaling_config={"min_replicas": cfg.embedder_min_replicas,
                                          "max_replicas": cfg.embedder_max_replicas,
                                          "target_ongoing_requests": cfg.embedder_target_ongoing_requests})
    class QueryEmbedder:
        def __init__(self, cfg_dict: dict[str, Any]) -> None:
            from tara_batch.search.session import SearchSession

            c = ServeAppConfig(**cfg_dict)
            session = SearchSession.open(c.table, model=c.model, version=c.version)
            self.embedder = session.embedder  # the table's checkpoint and profile; GPU when the replica has one

        def embed_texts(self, texts):
            return self.embedder.embed_texts(texts)

        def embed_videos(self, videos):
            return self.embedder.embed_videos(videos)

        def embed_composed(self, videos, edits):
            return self.embedder.embed_composed(videos, edits)

    @serve.deployment(name="SearchIngress", ray_actor_options={"num_cpus": cfg.ingress_num_cpus},
                      autoscaling_config={"min_replicas": cfg.ingress_min_replicas,
                                          "max_replicas": cfg.ingress_max_replicas})
    @serve.ingress()
    class SearchIngress:
        def __init__(self, cfg_dict: dict[str, Any], embedder) -> None:
            self.cfg = ServeAppConfig(**cfg_dict)
            self.embedder = RemoteEmbedder(embedder)

        def __serve_build_asgi_app__(self):
            from tara_batch.search.session import SearchSession
            from tara_batch.serve.app import create_app

            c = self.cfg
            session = SearchSession.open(c.table, model=c.model, version=c.version)
            session._embedder = self.embedder  # queries are embedded by the QueryEmbedder replicas
            return create_app(_service_config(c), session=session)

    cfg_dict = dataclasses.asdict(cfg)
    return SearchIngress.bind(cfg_dict, QueryEmbedder.bind(cfg_dict))
