"""Run the embed job on a multi-node Ray cluster inside this one process (ray.cluster_utils.Cluster): a head with
no CPUs for work, two CPU-only worker nodes that advertise the `tara_decode` resource, and one "GPU" node (a
declared GPU resource; torch sees no CUDA, so the model runs on its CPU). Prints JSON: where decode and embed ran
(node kind -> rows) and the table's rows. Run by tests/integration/embed/test_multinode.py in a subprocess, so this
cluster never meets the test session's own Ray.

    python tests/integration/embed/multinode_job.py VIDEO_DIR MODEL_DIR TABLE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str]) -> int:
    video_dir, model_dir, table = argv
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    kinds = {}
    for _ in range(2):
        node = cluster.add_node(num_cpus=2, resources={"tara_decode": 4})
        kinds[node.node_id] = "cpu"
    gpu = cluster.add_node(num_cpus=1, num_gpus=1)
    kinds[gpu.node_id] = "gpu"
    kinds[cluster.head_node.node_id] = "head"
    cluster.wait_for_nodes()
    try:
        from tara_batch.config import EmbedJobConfig, load_config
        from tara_batch.embed.job import run_embed

        cfg = load_config(EmbedJobConfig, None, [
            f"input.source={video_dir}", f"model.path={model_dir}", f"output.table={table}",
            f"ray.address={cluster.address}", "decode.batch_size=3", "embed.batch_size=4",
            "decode.resources={tara_decode: 1}", "embed.preprocess=decode_actors"])
        summary = run_embed(cfg, progress=False)
        by_kind = {"decode": {}, "embed": {}}
        for stage, nodes in (("decode", summary.decode_nodes), ("embed", summary.embed_nodes)):
            for node, n in nodes.items():
                k = kinds.get(node, f"unknown:{node}")
                by_kind[stage][k] = by_kind[stage].get(k, 0) + n
        print("RESULT " + json.dumps({"where": by_kind, "embedded": summary.embedded, "failed": summary.failed,
                                      "embed_gpus_per_actor": 1.0, "preprocess_on": summary.preprocess_on}))
    finally:
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
