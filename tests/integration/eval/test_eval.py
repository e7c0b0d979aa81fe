"""The eval job end to end on a CiA-layout benchmark of real clips: metrics equal an independent recomputation,
videos are embedded once per model version, reports and comparison are written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from ray_jobs.evaluate import main as evaluate_main
from tara_batch.cli import main as cli
from tara_batch.eval import metrics as M
from tara_batch.models.backend import TransformersEmbedder
from tara_batch.models.profile import get_profile
from tara_batch.video.registry import get_sampler

pytestmark = pytest.mark.integration


def _cia_csv(sample_dir, path):
    stems = sorted(p.stem for p in sample_dir.glob("clip_*.mp4"))[:16]
    rows = []
    for i, stem in enumerate(stems):  # 4 triplets x 2 labels x 2 videos
        t, label = i // 4, (i // 2) % 2
        rows.append({"id": stem, "chiral_triplet_id": f"t{t}", "chiral_label": label,
                     "text": f"shape {t} moves {'left' if label else 'right'}"})
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_cia_eval_matches_independent_computation(ray_session, s3_server, sample_dir, tiny_model_dir, tmp_path,
                                                  capsys):
    ann = tmp_path / "cia.csv"
    rows = _cia_csv(sample_dir, ann)
    s3_server.create_bucket("bench-cia")
    for r in rows:
        s3_server.put_bytes("bench-cia", f"ssv2/{r['id']}.mp4", (sample_dir / f"{r['id']}.mp4").read_bytes())
    out = tmp_path / "eval"
    args = ["--benchmark", "cia", "--annotations", str(ann), "--media", "s3://bench-cia/ssv2/", "--model",
            str(tiny_model_dir), "--out", str(out), *s3_server.overrides()]
    assert evaluate_main(args) == 0
    assert "Published Tarsier2 + TARA" in capsys.readouterr().out
    [report_path] = list(out.glob("cia-*.json"))
    report = json.loads(report_path.read_text())
    assert report["videos"] == 16 and report["embedded_now"] == 16

    # independent: decode + embed each clip directly, texts directly, metrics from the library
    prof = get_profile()
    emb = TransformersEmbedder(tiny_model_dir, prof)
    sampler = get_sampler("pyav")
    text_ids = list(dict.fromkeys(f"{r['chiral_triplet_id']}_{r['chiral_label']}" for r in rows))
    texts = {f"{r['chiral_triplet_id']}_{r['chiral_label']}": r["text"] for r in rows}
    t = emb.embed_texts([texts[i] for i in text_ids])
    v = np.concatenate([emb.embed_videos([sampler.sample((sample_dir / f"{r['id']}.mp4").read_bytes(),
                                                         prof.num_frames, prof.max_pixels).frames]) for r in rows])
    ref = M.cia_metrics(t, v, text_ids, [f"{r['chiral_triplet_id']}_{r['chiral_label']}" for r in rows])
    for k in ("chiral", "static", "all"):
        assert report["metrics"]["mAP"][k] == pytest.approx(ref[k], abs=1e-3)
    assert 0 < report["metrics"]["modality_gap"] < 2
    assert set(report["metrics"]["t2v"]) == set(report["metrics"]["v2t"]) == {"R@1", "R@5", "R@10", "MdR"}
    assert Image.open(report["projection_png"]).size == (640, 640)

    # a second run reuses the embedded videos; a comparison table renders both
    assert evaluate_main(args) == 0
    capsys.readouterr()
    again = json.loads(report_path.read_text())
    assert again["embedded_now"] == 0 and again["metrics"] == report["metrics"]
    assert cli(["eval-compare", str(report_path), str(report_path)]) == 0
    table = capsys.readouterr().out
    assert "mAP/chiral" in table and table.splitlines()[1] == "|---|---|---|"


def test_generic_benchmark(ray_session, sample_dir, tiny_model_dir, tmp_path):
    clips = sorted(sample_dir.glob("clip_*.mp4"))[:5]
    doc = {"queries": [{"query_id": "q1", "text": "a moving shape", "relevant": ["g0", "g2"]},
                       {"query_id": "q2", "uri": str(clips[1]), "relevant": ["g1"]}],
           "gallery": [{"item_id": f"g{i}", "uri": str(c)} for i, c in enumerate(clips)]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "eval"
    assert cli(["-q", "eval", "--benchmark", "generic", "--annotations", str(path), "--model", str(tiny_model_dir),
                "--out", str(out)]) == 0
    report = json.loads(next(out.glob("generic-*.json")).read_text())
    assert set(report["metrics"]["retrieval"]) == {"R@1", "R@5", "R@10", "MdR"}
    assert report["metrics"]["retrieval"]["R@5"] == 100.0  # 5 items: every relevant item is in the top 5
    # video -> text: g0 and g2 are listed by the one text query, so each ranks it first; the rest have no rank
    assert report["metrics"]["v2t"]["R@1"] == 100.0


@pytest.mark.slow
def test_rtime_negbench_covr_layouts(ray_session, s3_server, sample_dir, tiny_model_dir, tmp_path):
    """The other layouts run end to end on real clips in S3 (annotations and media) and give metrics in range,
    consistent with their definitions."""
    clips = sorted(p.name for p in sample_dir.glob("clip_*.mp4"))[:6]
    s3_server.create_bucket("bench-layouts")
    for c in clips:
        s3_server.put_bytes("bench-layouts", f"media/{c}", (sample_dir / c).read_bytes())
    rt = tmp_path / "rtime.csv"
    rt.write_text("video,reverse_video,caption,reverse_caption\n" + "".join(
        f"{clips[i]},{clips[i + 3]},shape {i} forward,shape {i} backward\n" for i in range(3)))
    std, neg = tmp_path / "std.csv", tmp_path / "neg.csv"
    std.write_text("video,caption\n" + "".join(f"{c},a shape moves {i}\n" for i, c in enumerate(clips)))
    neg.write_text("video,caption\n" + "".join(f"{c},a shape does not move {i}\n" for i, c in enumerate(clips)))
    cv = tmp_path / "covr.csv"
    cv.write_text("video1,video2,edit\n" + "".join(f"{clips[i]},{clips[i + 3]},make it faster\n" for i in range(3)))
    ann = {p.name: s3_server.put_bytes("bench-layouts", f"ann/{p.name}", p.read_bytes()) for p in (rt, std, neg, cv)}
    out = tmp_path / "eval"
    base = ["-q", "eval", "--media", "s3://bench-layouts/media/", "--model", str(tiny_model_dir), "--out", str(out)]
    s3 = s3_server.overrides()
    assert cli([*base, "--benchmark", "rtime", "--annotations", ann["rtime.csv"], *s3]) == 0
    assert cli([*base, "--benchmark", "negbench", "--annotations", ann["std.csv"], ann["neg.csv"], *s3]) == 0
    assert cli([*base, "--benchmark", "covr", "--annotations", ann["covr.csv"], *s3]) == 0
    rtime_report = json.loads(next(out.glob("rtime-*.json")).read_text())
    png = Image.open(rtime_report["projection_png"])  # the modality plot of the paired forward videos / captions
    assert png.size == (640, 640)
    rtime = json.loads(next(out.glob("rtime-*.json")).read_text())["metrics"]["binary"]
    # 3 pairs: each accuracy is a whole number of thirds
    assert set(rtime) == {"t2v", "v2t"} and all(abs(v * 3 / 100 - round(v * 3 / 100)) < 1e-6 for v in rtime.values())
    neg_r = json.loads(next(out.glob("negbench-*.json")).read_text())["metrics"]["R@5"]
    assert set(neg_r) == {"standard", "negated"} and all(0 <= v <= 100 for v in neg_r.values())
    covr = json.loads(next(out.glob("covr-*.json")).read_text())["metrics"]["composed"]
    assert covr["R@5"] == 100.0 >= covr["R@1"]  # 3 targets: every target is in the top 5


def test_charades_sta_grounding_over_s3(ray_session, s3_server, tiny_model_dir, tmp_path, capsys):
    """Temporal grounding on a Charades-STA layout in S3: the videos are embedded as sliding windows, each sentence
    is grounded in its video, and R1@IoU / mIoU equal an independent recomputation from windows embedded directly;
    a rerun embeds nothing."""
    from tara_batch.eval import grounding as G
    from tara_batch.video.encode import encode_video
    from tara_batch.video.samples import make_clip_frames

    s3_server.create_bucket("charades")
    local = tmp_path / "media"
    vids = {"AO8RW": (64, 8), "Y6R7T": (50, 10), "KX2P9": (40, 8)}  # id -> (frames, fps): 8 s, 5 s, 5 s
    for i, (vid, (n, fps)) in enumerate(vids.items()):
        path = encode_video(local / f"{vid}.mp4", make_clip_frames(48, 64, n, seed=20 + i), fps)
        s3_server.put_bytes("charades", f"videos/{vid}.mp4", path.read_bytes())
    lines = ["AO8RW 0.0 3.1##a person opens a door.", "AO8RW 4.2 8.0##a person closes the door.",
             "Y6R7T 1.0 4.0##someone is drinking from a cup.", "KX2P9 0.5 2.5##a person sits down."]
    ann = s3_server.put_bytes("charades", "charades_sta_test.txt", ("\n".join(lines) + "\n").encode())
    out = tmp_path / "eval"
    args = ["--benchmark", "charades-sta", "--annotations", ann, "--media", "s3://charades/videos/", "--model",
            str(tiny_model_dir), "--out", str(out), "decode.segment_s=2", "decode.segment_stride_s=1",
            *s3_server.overrides()]
    assert evaluate_main(args) == 0
    md = capsys.readouterr().out
    assert "R1@0.5" in md and "TAR-TVG" in md
    [path] = list(out.glob("charades-sta-*.json"))
    report = json.loads(path.read_text())
    assert report["embedded_now"] == 3 and report["segments"] == [2.0, 1.0]
    got = report["metrics"]["grounding"]
    assert set(got) == {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}

    # independent: windows decoded and embedded directly, sentences embedded, the grounding rule applied
    prof = get_profile()
    emb = TransformersEmbedder(tiny_model_dir, prof)
    sampler = get_sampler("pyav")
    wv, wu, ws, we = [], [], [], []
    for vid in vids:
        video = sampler.sample((local / f"{vid}.mp4").read_bytes(), prof.num_frames, prof.max_pixels, (2.0, 1.0))
        wv.append(emb.embed_videos(video.split()))
        wu += [vid] * len(video.windows)
        ws += video.windows[:, 0].tolist()
        we += video.windows[:, 1].tolist()
    assert report["metrics"]["windows"] == len(wu)
    q = emb.embed_texts([ln.split("##")[1] for ln in lines])
    pred = G.ground_queries(q, np.concatenate(wv), wu, np.array(ws), np.array(we), [ln.split()[0] for ln in lines])
    gt = np.array([[float(x) for x in ln.split("##")[0].split()[1:]] for ln in lines])
    ref = G.grounding_metrics(pred, gt)
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k
    rows = list(csv.DictReader(next(out.glob("charades-sta-*.predictions.csv")).open()))
    assert [float(r["pred_start"]) for r in rows] == pytest.approx(pred[:, 0].tolist(), abs=1e-3)

    # rerun: the windows are reused, nothing is embedded again
    assert evaluate_main(args) == 0
    again = json.loads(path.read_text())
    assert again["embedded_now"] == 0 and again["metrics"] == report["metrics"]
