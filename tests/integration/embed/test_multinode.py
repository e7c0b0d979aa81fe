"""A cluster on one machine: the embed job on a multi-node Ray cluster (Ray's cluster utilities, in a subprocess)
with CPU-only nodes and a "GPU" node (declared GPU resource). Decode work lands on the CPU nodes, the model actor on
the GPU node, and the table holds the same rows, with the same vectors, as a single-node run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tara_batch import schema as S
from tara_batch.cli import main as cli
from tara_batch.search.session import SearchSession

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).with_name("multinode_job.py")


def _vectors(table: Path) -> dict[str, np.ndarray]:
    rows = SearchSession.open(str(table), load_model=False).table.to_arrow()
    return {u: np.asarray(v, np.float32) for u, v in zip(rows.column(S.URI).to_pylist(),
                                                         rows.column(S.EMBEDDING).to_pylist(), strict=True)}


@pytest.mark.slow
def test_decode_on_cpu_nodes_embed_on_gpu_node_same_rows(ray_session, sample_dir, tiny_model_dir, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for p in sorted(sample_dir.glob("clip_*.mp4"))[:10]:
        shutil.copy(p, videos / p.name)
    multi = tmp_path / "multi.lancedb" / "videos"
    env = {**os.environ, "RAY_ADDRESS": ""}  # never join the test session's Ray
    proc = subprocess.run([sys.executable, str(SCRIPT), str(videos), str(tiny_model_dir), str(multi)],
                          capture_output=True, text=True, timeout=600, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["embedded"] == 10 and result["failed"] == 0
    assert result["where"]["decode"] == {"cpu": 10}  # every decode on a CPU node, none on the GPU node or head
    assert result["where"]["embed"] == {"gpu": 10}  # the model actor (1 GPU) on the GPU node

    single = tmp_path / "single.lancedb" / "videos"
    assert cli(["-q", "embed", "--input", str(videos), "--model", str(tiny_model_dir), "--table", str(single),
                "--no-progress"]) == 0
    a, b = _vectors(multi), _vectors(single)
    assert set(a) == set(b) and len(a) == 10
    for uri in a:
        np.testing.assert_allclose(a[uri], b[uri], atol=1e-5)
