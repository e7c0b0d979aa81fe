"""The train job end to end on a local Ray session (2 CPUs, 2 Ray Train workers, gloo) with the tiny Qwen2-VL.

(a) learning is real (FSDP2 across the 2 workers): held-out temporal/negation triplets (subjects AND objects unseen in training) go from about
    chance to clearly right; the reported accuracy is cross-checked with the inference embedder.
(b) only the LLM is trained: vision tensors of the merged checkpoint are byte-identical to the source.
(c) merged checkpoint -> TransformersEmbedder gives the training side's embeddings of the final weights.
(d) resume (DDP): a run stopped at step 6 and rerun (same storage + name, checkpoints and data on S3) ends with the
    same weights as an uninterrupted run.

Runs the real entry point (`ray_jobs/train.py main`) in-process.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from ray_jobs.train import main as train_main
from tara_batch.models.profile import get_profile

pytestmark = pytest.mark.integration

# --- a small, self-contained triplet generator -----------------------------------------------------------------------
# Temporal: the hard negative is the anchor with the opposite verb; the positive shares verb + object but not the
# subject. Negation: the hard negative negates the anchor. Held-out subjects and objects never occur in training.
PAIRS = [("opens", "closes"), ("picks up", "puts down"), ("folds", "unfolds"), ("pushes", "pulls"),
         ("lifts", "lowers"), ("enters", "exits"), ("screws", "unscrews"), ("climbs", "descends")]
TRAIN_SUBJECTS = ["the man", "a woman", "the child", "a person", "the cook", "my friend", "the boy", "her sister"]
TRAIN_OBJECTS = ["door", "box", "paper", "cart", "lid", "window", "bag", "drawer", "ladder", "bottle"]
HELDOUT_SUBJECTS = ["the doctor", "a girl", "the worker", "an old man"]
HELDOUT_OBJECTS = ["cupboard", "blanket", "gate", "jar", "suitcase"]


def triplets(kind: str, subjects: list[str], objects: list[str], n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pair = rng.choice(PAIRS)
        verb, opposite = pair if rng.random() < 0.5 else pair[::-1]
        s1, s2 = rng.sample(subjects, 2)
        obj = rng.choice(objects)
        anchor, positive = f"{s1} {verb} the {obj}", f"{s2} {verb} the {obj}"
        negative = f"{s1} {opposite} the {obj}" if kind == "temporal" else f"{s1} never {verb} the {obj}"
        out.append((anchor, positive, negative))
    return out


def write_csv(path: Path, rows, source: str | None = None) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sent0", "sent1", "hard_neg"] + (["source"] if source else []))
        for r in rows:
            w.writerow([*r, source] if source else list(r))
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("triplets")
    write_csv(d / "temporal.csv", triplets("temporal", TRAIN_SUBJECTS, TRAIN_OBJECTS, 400, seed=0))
    write_csv(d / "negation.csv", triplets("negation", TRAIN_SUBJECTS, TRAIN_OBJECTS, 300, seed=1))
    heldout = [(*r, "temporal") for r in triplets("temporal", HELDOUT_SUBJECTS, HELDOUT_OBJECTS, 150, seed=2)]
    heldout += [(*r, "negation") for r in triplets("negation", HELDOUT_SUBJECTS, HELDOUT_OBJECTS, 100, seed=3)]
    with open(d / "heldout.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sent0", "sent1", "hard_neg", "source"])
        w.writerows(heldout)
    return d


def _common(model: Path) -> list[str]:
    return ["--config", str(Path(__file__).resolve().parents[3] / "ray_jobs" / "train_tiny.yaml"),
            f"model.path={model}", "scaling.num_workers=2", "scaling.cpus_per_worker=1"]


@pytest.fixture(scope="module")
def learned(ray_session, tiny_model_dir, data_dir, tmp_path_factory):
    """One real training run: 2 workers x micro 8, 2 epochs over 480 mixed triplets = 60 optimizer steps.

    Under FSDP2 (sharded LLM, gloo): the strategy train.yaml uses for 7B; the resume test below runs DDP."""
    out = tmp_path_factory.mktemp("learned")
    rc = train_main([
        *_common(tiny_model_dir),
        f"data.sources=[{{path: {data_dir / 'temporal.csv'}, count: 320, name: temporal}}, "
        f"{{path: {data_dir / 'negation.csv'}, count: 160, name: negation}}]",
        f"validation.path={data_dir / 'heldout.csv'}",
        f"run.storage_path={out / 'runs'}", "run.name=learn", f"output.dir={out / 'model'}", "scaling.strategy=fsdp",
    ])
    assert rc == 0
    return out / "model", json.loads((out / "model" / "tara_batch_train.json").read_text())


def test_learning_is_real(learned):
    _, record = learned
    before, after = record["before"], record["after"]
    print("held-out accuracy before -> after:",
          {s: (round(before[s]["accuracy"], 3), round(after[s]["accuracy"], 3)) for s in before})
    assert record["steps"] == 60
    assert record["data"]["train_per_source"] == {"negation": 160, "temporal": 320}
    assert set(before) == {"temporal", "negation", "all"} and before["all"]["n"] == 250
    for s in ("temporal", "negation", "all"):
        assert after[s]["accuracy"] >= 0.75, (s, after[s])
        assert after[s]["accuracy"] >= before[s]["accuracy"] + 0.25, (s, before[s], after[s])
        assert after[s]["margin"] > before[s]["margin"]
    assert before["all"]["accuracy"] <= 0.6  # a random tiny model does not solve it


def test_reported_accuracy_matches_inference_embedder(learned, data_dir):
    """The worker-side evaluation, recomputed independently with the inference backend on the merged checkpoint."""
    from tara_batch.models.backend import TransformersEmbedder

    model_dir, record = learned
    with open(data_dir / "heldout.csv") as fh:
        rows = list(csv.DictReader(fh))
    emb = TransformersEmbedder(model_dir, get_profile(), threads=1)
    a, p, n = (emb.embed_texts([r[c] for r in rows]) for c in ("sent0", "sent1", "hard_neg"))
    correct = (a * p).sum(1) > (a * n).sum(1)
    assert abs(correct.mean() - record["after"]["all"]["accuracy"]) < 1e-9
    margin = ((a * p).sum(1) - (a * n).sum(1)).mean()
    assert abs(margin - record["after"]["all"]["margin"]) < 1e-4


def test_only_llm_tensors_change(learned, tiny_model_dir):
    from tests.unit.train.test_loss import _tensor_bytes

    model_dir, _ = learned
    src, out = _tensor_bytes(tiny_model_dir), _tensor_bytes(model_dir)
    assert src.keys() == out.keys()
    vision = [k for k in src if k.startswith(("visual.", "model.visual."))]
    llm = [k for k in src if k.startswith("model.") and k not in vision]
    assert len(vision) > 20 and len(llm) == 26
    assert all(src[k] == out[k] for k in vision)  # bit-identical
    assert src["lm_head.weight"] == out["lm_head.weight"]
    assert all(src[k] != out[k] for k in llm)


def test_checkpoint_round_trip(learned, tiny_model_dir):
    """Final weights of the Ray checkpoint (training side) == what `tara-batch embed --model OUT` computes."""
    from safetensors.torch import load_file

    from tara_batch.models.backend import TransformersEmbedder
    from tara_batch.models.checkpoint import resolve_checkpoint
    from tara_batch.train.model import embed_texts, load_text_model, load_tokenizer

    model_dir, record = learned
    model = load_text_model(tiny_model_dir)
    model.load_state_dict(load_file(str(Path(record["checkpoint"]) / "llm.safetensors")))
    texts = ["the doctor opens the jar", "a girl never lifts the blanket", "cut", "x " * 50]
    train_side = embed_texts(model, load_tokenizer(model_dir), get_profile(), texts)
    served = TransformersEmbedder(resolve_checkpoint(str(model_dir)), get_profile(), threads=1).embed_texts(texts)
    base = TransformersEmbedder(tiny_model_dir, get_profile(), threads=1).embed_texts(texts)
    assert np.abs(train_side - served).max() < 1e-5
    assert np.abs(served - base).max() > 1e-2  # the fine-tune did change the embeddings


# --- data ---------------------------------------------------------------------------------------------------------

def test_data_formats_mixture_and_split(ray_session, data_dir, tmp_path):
    """CSV, Parquet and JSONL read to the same rows; counts/ratios; held-out rows disjoint; deterministic."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from tara_batch.train.config import SourceConfig, TrainDataConfig, ValidationConfig
    from tara_batch.train.data import load_triplet_data, read_triplets

    table = pacsv.read_csv(data_dir / "negation.csv")
    pq.write_table(table, tmp_path / "negation.parquet")
    with open(tmp_path / "negation.jsonl", "w") as fh:
        for row in table.to_pylist():
            fh.write(json.dumps(row) + "\n")
    cols = TrainDataConfig(sources=(SourceConfig(path="x.csv"),))
    rows = [read_triplets(SourceConfig(path=str(p)), cols)[0]
            for p in (data_dir / "negation.csv", tmp_path / "negation.parquet", tmp_path / "negation.jsonl")]
    assert len(rows[0]) == 300 and rows[0] == rows[1] == rows[2]

    mix = TrainDataConfig(sources=(SourceConfig(path=str(data_dir / "temporal.csv"), ratio=0.75),
                                   SourceConfig(path=str(tmp_path / "negation.parquet"), ratio=0.25, name="neg")),
                          total=200)
    data = load_triplet_data(mix, ValidationConfig(fraction=0.1), seed=3)
    assert data.info["train_per_source"] == {"neg": 50, "temporal": 150}
    assert data.info["val_per_source"] == {"neg": 5, "temporal": 15}
    train_rows = set(zip(data.train.anchor, data.train.positive, data.train.negative, strict=True))
    val_rows = set(zip(data.val.anchor, data.val.positive, data.val.negative, strict=True))
    assert not train_rows & val_rows
    again = load_triplet_data(mix, ValidationConfig(fraction=0.1), seed=3)
    assert again.fingerprint() == data.fingerprint()
    assert load_triplet_data(mix, ValidationConfig(fraction=0.1), seed=4).fingerprint() != data.fingerprint()


# --- resume -------------------------------------------------------------------------------------------------------

BUCKET = "train-runs"


def _resume_args(model: Path, srv, out: Path, name: str) -> list[str]:
    # 96 triplets / (micro 4 x 2 workers x accum 2) = 6 steps per epoch, 12 steps; data and checkpoints on S3
    return [
        *_common(model),
        f"data.sources=[{{path: s3://{BUCKET}/data/temporal.csv, count: 96}}]", "validation.fraction=0.1",
        "train.micro_batch=4", "train.grad_accum=2", "train.epochs=2", "train.lr=0.001",
        "run.eval_every=100", "run.checkpoint_every=6", f"run.storage_path=s3://{BUCKET}/runs", f"run.name={name}",
        f"output.dir={out}", f"s3.endpoint_url={srv.endpoint_url}", "s3.region=us-east-1",
        "s3.access_key_id=testing", "s3.secret_access_key=testing",
    ]


@pytest.mark.slow
def test_resume_continues_exactly(ray_session, tiny_model_dir, data_dir, s3_server, tmp_path):
    from tara_batch.train.model import LazySafetensors, weight_files

    s3_server.create_bucket(BUCKET)
    s3_server.put_bytes(BUCKET, "data/temporal.csv", (data_dir / "temporal.csv").read_bytes())

    # uninterrupted
    assert train_main(_resume_args(tiny_model_dir, s3_server, tmp_path / "full", "full")) == 0
    # stopped after step 6 (checkpointed), then the same command without the stop resumes from it
    stopped = _resume_args(tiny_model_dir, s3_server, tmp_path / "resumed", "resumed")
    assert train_main([*stopped, "run.stop_after_step=6"]) == 0
    assert not (tmp_path / "resumed").exists()  # nothing merged before the last step
    assert train_main(stopped) == 0

    full = json.loads((tmp_path / "full" / "tara_batch_train.json").read_text())
    resumed = json.loads((tmp_path / "resumed" / "tara_batch_train.json").read_text())
    assert full["steps"] == resumed["steps"] == 12
    assert full["data_files_sha256"] == resumed["data_files_sha256"]
    assert full["after"]["all"]["accuracy"] == resumed["after"]["all"]["accuracy"]
    a = LazySafetensors([tmp_path / "full" / f for f in weight_files(tmp_path / "full")])
    b = LazySafetensors([tmp_path / "resumed" / f for f in weight_files(tmp_path / "resumed")])
    base = LazySafetensors([tiny_model_dir / "model.safetensors"])
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-6, rtol=0, err_msg=k)
    assert any(not np.array_equal(a[k].numpy(), base[k].numpy()) for k in a if k.startswith("model.layers"))
    # checkpoints really live in the bucket
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=BUCKET, Prefix="runs/resumed/")["Contents"]]
    assert any(k.endswith("llm.safetensors") for k in keys) and any(k.endswith(".distcp") for k in keys)
