"""One small real index for the service tests: the embed job over the sample archive with the tiny model."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def served_index(ray_session, sample_dir, tiny_model_dir, tmp_path_factory):
    from tara_batch.config import EmbedJobConfig, load_config
    from tara_batch.embed.job import run_embed

    table = str(tmp_path_factory.mktemp("served") / "index.lancedb" / "videos")
    flags = {"input": {"source": str(sample_dir)}, "model": {"path": str(tiny_model_dir)}, "output": {"table": table}}
    run_embed(load_config(EmbedJobConfig, None, ["profile.max_pixels=50176"], flags=flags), progress=False)
    return table


@pytest.fixture(scope="session")
def service_session(served_index):
    from tara_batch.search.session import SearchSession

    return SearchSession.open(served_index)
