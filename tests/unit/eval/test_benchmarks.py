"""Benchmark file readers: tiny synthetic files of each public layout -> exact parsed outputs."""

from __future__ import annotations

import json
import os

import pytest

from tara_batch.errors import InputError
from tara_batch.eval.benchmarks import read_charades_sta, read_cia, read_covr, read_negbench, read_rtime, resolve_media
from tara_batch.eval.generic import read_generic
from tara_batch.eval.metrics import cia_galleries


def _write(tmp_path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_resolve_media_local_s3_and_absolute(tmp_path):
    assert resolve_media("s3://b/root/", "/a/x.mp4") == "/a/x.mp4"
    assert resolve_media("s3://b/root/", "a/x.mp4") == "s3://b/root/a/x.mp4"
    assert resolve_media("s3://b/root", "a/x.mp4") == "s3://b/root/a/x.mp4"
    assert resolve_media(str(tmp_path), "a/x.mp4") == os.path.join(str(tmp_path), "a/x.mp4")
    assert resolve_media(None, "x.mp4") == "x.mp4"
    assert resolve_media("/root", "s3://o/k.mp4") == "s3://o/k.mp4"


def test_cia(tmp_path):
    path = _write(
        tmp_path,
        "cia.csv",
        "id,chiral_triplet_id,chiral_label,text,video_path\n"
        "v1,t7,0,opening a jar,\n"
        "v2,t7,1,closing a jar,\n"
        "v3,t7,0,opening a jar,sub/v3.webm\n"
        "v4,t9,1,pushing left,\n",
    )
    b = read_cia(path, "s3://bucket/cia")
    assert b.text_ids == ["t7_0", "t7_1", "t9_1"]
    assert b.texts == ["opening a jar", "closing a jar", "pushing left"]
    assert b.video_ids == ["v1", "v2", "v3", "v4"]
    assert b.video_uris == [
        "s3://bucket/cia/v1.mp4",
        "s3://bucket/cia/v2.mp4",
        "s3://bucket/cia/sub/v3.webm",
        "s3://bucket/cia/v4.mp4",
    ]
    assert b.video_text_ids == ["t7_0", "t7_1", "t7_0", "t9_1"]
    assert b.chiral_pairs == {"t7_0": "t7_1", "t7_1": "t7_0", "t9_1": "t9_0"}
    assert b.labels == {"t7_0": 0, "t7_1": 1, "t9_1": 1}
    g = cia_galleries(b.text_ids, b.video_text_ids, b.chiral_pairs, b.labels)  # consumable as is
    assert g["chiral"][0].tolist() == [True, True, True, False]


def test_cia_caption_column_ext_and_label_errors(tmp_path):
    path = _write(tmp_path, "cia.csv", "id,chiral_triplet_id,chiral_label,caption\na,1,1.0,x\n")
    b = read_cia(path, str(tmp_path), ext=".avi")
    assert b.text_ids == ["1_1"] and b.video_uris == [os.path.join(str(tmp_path), "a.avi")]
    bad = _write(tmp_path, "bad.csv", "id,chiral_triplet_id,chiral_label,text\na,1,2,x\n")
    with pytest.raises(InputError, match=r"row 2 has chiral_label='2'"):
        read_cia(bad)
    clash = _write(tmp_path, "clash.csv", "id,chiral_triplet_id,chiral_label,text\na,1,0,x\nb,1,0,y\n")
    with pytest.raises(InputError, match="two texts"):
        read_cia(clash)


def test_cia_missing_column_error_names_file_column_and_found(tmp_path):
    path = _write(tmp_path, "cia.csv", "id,chiral_label,text\na,0,x\n")
    with pytest.raises(InputError) as ei:
        read_cia(path)
    msg = str(ei.value)
    assert path in msg and "'chiral_triplet_id'" in msg and "['id', 'chiral_label', 'text']" in msg
    no_text = _write(tmp_path, "cia2.csv", "id,chiral_triplet_id,chiral_label\na,1,0\n")
    with pytest.raises(InputError, match=r"missing text column \(looked for \['text', 'caption'"):
        read_cia(no_text)
    with pytest.raises(InputError, match="missing text column 'desc'"):
        read_cia(no_text, text_col="desc")


def test_rtime(tmp_path):
    path = _write(
        tmp_path,
        "rtime.csv",
        "video,reverse_video,caption,reverse_caption\n"
        "a,a_rev.mp4,a man sits down,a man stands up\n"
        "s3://x/b.mp4,b_r,door opens,door closes\n",
    )
    b = read_rtime(path, "/m")
    assert b.video_uris == ["/m/a.mp4", "s3://x/b.mp4"]
    assert b.reverse_video_uris == ["/m/a_rev.mp4", "/m/b_r.mp4"]
    assert b.captions == ["a man sits down", "door opens"]
    assert b.reverse_captions == ["a man stands up", "door closes"]
    assert read_rtime(path, reverse_caption_col=None).reverse_captions is None
    with pytest.raises(InputError, match=r"missing column 'fwd'; columns found: \['video', 'reverse_video'"):
        read_rtime(path, video_col="fwd")


def test_negbench_alignment(tmp_path):
    std = _write(
        tmp_path,
        "std.csv",
        "filepath,captions\nv1.mp4,\"['a dog runs', 'a dog plays']\"\nv2.mp4,a cat sleeps\nv2.mp4,a cat naps\n",
    )
    neg = _write(
        tmp_path,
        "neg.csv",
        "filepath,captions\n"
        'v2.mp4,"[""a cat sleeps, not a dog"", ""a cat naps, no bed""]"\n'
        "v1.mp4,\"['a dog runs without a ball', 'a dog plays, no cat']\"\n",
    )
    b = read_negbench(std, neg, "s3://b/vids")
    assert b.gallery_uris == ["s3://b/vids/v1.mp4", "s3://b/vids/v2.mp4"]
    assert b.standard_captions == ["a dog runs", "a dog plays", "a cat sleeps", "a cat naps"]
    assert b.negated_captions == [
        "a dog runs without a ball",
        "a dog plays, no cat",
        "a cat sleeps, not a dog",
        "a cat naps, no bed",
    ]
    assert b.target_index == [0, 0, 1, 1]


def test_negbench_mismatch_errors(tmp_path):
    std = _write(tmp_path, "std.csv", "video,caption\nv1,a\nv2,b\n")
    neg = _write(tmp_path, "neg.csv", "video,caption\nv1,not a\n")
    with pytest.raises(InputError, match="only in .*std.csv"):
        read_negbench(std, neg)
    neg2 = _write(tmp_path, "neg2.csv", "video,caption\nv1,not a\nv1,no a\nv2,not b\n")
    with pytest.raises(InputError, match="'v1': 1 captions"):
        read_negbench(std, neg2)
    nocap = _write(tmp_path, "nocap.csv", "video,desc\nv1,a\n")
    with pytest.raises(InputError, match=r"nocap.csv: missing caption column .*columns found: \['video', 'desc'\]"):
        read_negbench(std, nocap)


def test_covr(tmp_path):
    path = _write(
        tmp_path,
        "covr.csv",
        "video1,video2,edit,txt1,txt2\n"
        "001/11,001/22,make it night,a street by day,a street by night\n"
        "001/33,001/22,remove the car,a street with a car,a street by night\n"
        "002/44,002/55.webm,zoom in,a face,a close face\n",
    )
    b = read_covr(path, "/data/webvid")
    assert b.source_uris == ["/data/webvid/001/11.mp4", "/data/webvid/001/33.mp4", "/data/webvid/002/44.mp4"]
    assert b.edits == ["make it night", "remove the car", "zoom in"]
    assert b.gallery_uris == ["/data/webvid/001/22.mp4", "/data/webvid/002/55.webm"]
    assert b.target_index == [0, 0, 1]
    assert b.source_captions == ["a street by day", "a street with a car", "a face"]
    assert b.target_captions == ["a street by night", "a street by night", "a close face"]
    nocaps = _write(tmp_path, "c2.csv", "video1,video2,edit\na,b,x\n")
    assert read_covr(nocaps).source_captions is None
    with pytest.raises(InputError, match=r"c2.csv: missing column 'edit_text'"):
        read_covr(nocaps, edit_col="edit_text")


def test_charades_sta_both_formats(tmp_path):
    official = _write(
        tmp_path,
        "sta.txt",
        "AO8RW 0.0 6.9##a person is putting a book on a shelf.\n\nY6R7T 11.2 18.5##person opens the door.\n",
    )
    b = read_charades_sta(official, "s3://c/videos")
    assert b.video_ids == ["AO8RW", "Y6R7T"]
    assert b.video_uris == ["s3://c/videos/AO8RW.mp4", "s3://c/videos/Y6R7T.mp4"]
    assert b.starts == [0.0, 11.2] and b.ends == [6.9, 18.5]
    assert b.sentences == ["a person is putting a book on a shelf.", "person opens the door."]
    ws = _write(tmp_path, "sta2.txt", "AO8RW 0.0 6.9 a person is putting a book on a shelf.\n")
    w = read_charades_sta(ws, ext=".webm")
    assert (w.video_uris, w.starts, w.ends, w.sentences) == (
        ["AO8RW.webm"],
        [0.0],
        [6.9],
        ["a person is putting a book on a shelf."],
    )
    for bad, pattern in (("AO8RW 0.0##x\n", "line 1 is not"), ("A x 1##s\n", "not numbers"), ("A 5 1##s\n", ">")):
        with pytest.raises(InputError, match=pattern):
            read_charades_sta(_write(tmp_path, "bad.txt", bad))


def test_generic_three_files(tmp_path):
    q = _write(tmp_path, "q.csv", "query_id,text,uri\nq1,a dog,\nq2,,clips/q2.mp4\nq3,unjudged,\n")
    g = _write(tmp_path, "g.jsonl", '{"item_id": "g1", "uri": "v/g1.mp4"}\n{"item_id": "g2", "uri": "/abs/g2.mp4"}\n')
    r = _write(tmp_path, "r.csv", "query_id,item_id,relevance\nq1,g2,1\nq1,g1,2\nq2,g2,1\nq3,g1,0\n")
    with pytest.raises(InputError, match=r"1 queries have no relevant gallery item \(e.g. \['q3'\]\)"):
        read_generic(q, g, r, "/m")
    b = read_generic(q, g, r, "/m", drop_unjudged=True)
    assert b.query_ids == ["q1", "q2"]
    assert b.query_texts == ["a dog", None]
    assert b.query_uris == [None, "/m/clips/q2.mp4"]
    assert b.gallery_ids == ["g1", "g2"]
    assert b.gallery_uris == ["/m/v/g1.mp4", "/abs/g2.mp4"]
    assert b.relevant == [[0, 1], [1]]
    bad_r = _write(tmp_path, "r2.csv", "query,item_id\nq1,g1\n")
    with pytest.raises(InputError, match=r"r2.csv: missing relevance query id column 'query_id'; columns found"):
        read_generic(q, g, bad_r)
    unknown = _write(tmp_path, "r3.csv", "query_id,item_id\nq1,g9\n")
    with pytest.raises(InputError, match="unknown gallery item id 'g9'"):
        read_generic(q, g, unknown)


def test_generic_single_json_and_jsonl(tmp_path):
    obj = {
        "queries": [{"query_id": "a", "text": "t", "relevant": ["x"]}, {"query_id": "b", "uri": "s3://q/b.mp4"}],
        "gallery": [{"item_id": "x", "uri": "x.mp4"}, {"item_id": "y", "uri": "y.mp4"}],
        "relevance": [{"query_id": "b", "item_id": "y"}, {"query_id": "b", "item_id": "x"}],
    }
    b = read_generic(_write(tmp_path, "bench.json", json.dumps(obj)), media_root="s3://m")
    assert b.query_ids == ["a", "b"] and b.query_uris == [None, "s3://q/b.mp4"]
    assert b.gallery_uris == ["s3://m/x.mp4", "s3://m/y.mp4"]
    assert b.relevant == [[0], [0, 1]]
    lines = [
        {"type": "gallery", "item_id": "x", "uri": "x.mp4"},
        {"type": "query", "query_id": "a", "text": "t"},
        {"type": "relevance", "query_id": "a", "item_id": "x"},
    ]
    jl = _write(tmp_path, "bench.jsonl", "\n".join(json.dumps(x) for x in lines))
    b2 = read_generic(jl)
    assert (b2.query_ids, b2.gallery_uris, b2.relevant) == (["a"], ["x.mp4"], [[0]])
    with pytest.raises(InputError, match="missing key"):
        read_generic(_write(tmp_path, "b2.json", json.dumps({"queries": []})))


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_cia(str(tmp_path / "nope.csv"))


def test_eval_takes_an_embed_job_yaml_as_its_config():
    """`tara-batch eval --config ray_jobs/embed.yaml`: the YAML's input/output are the eval job's to fill in."""
    from pathlib import Path

    from tara_batch.eval.job import request_from_args

    yaml_path = Path(__file__).resolve().parents[3] / "ray_jobs" / "embed.yaml"
    req = request_from_args("cia", ["a.csv"], None, "/models/m", "/tmp/out", str(yaml_path), ["embed.batch_size=3"])
    assert req.job.input.manifest == "-" and req.job.input.source is None
    assert req.job.model.path == "/models/m" and req.job.embed.batch_size == 3
