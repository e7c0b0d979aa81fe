"""Runs that survive: driver SIGKILLs, S3 faults, a dying actor, incremental reruns, and re-embedding behind an alias.

Every test checks the exact final row set: the expected video ids, each exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ray_jobs.embed import main as embed_main
from tara_batch import schema as S
from tara_batch.index.catalog import Catalog, resolve_table
from tara_batch.index.status import index_status
from tara_batch.index.tables import TableRef, connect, table_exists
from tara_batch.io.listing import list_videos
from tara_batch.search.session import SearchSession
from tara_batch.video.encode import encode_video
from tara_batch.video.samples import make_clip_frames, write_sample_archive
from tests.faults import FaultProxy
from tests.s3server import s3_overrides

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def _ids(table) -> list[str]:
    return table.to_arrow().column(S.VIDEO_ID).to_pylist()


def _kill_process_titled(fragment: str) -> int | None:
    """SIGKILL the first process whose title contains `fragment` (Ray names actor processes `ray::<class>`)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in title and "pytest" not in title:
            os.kill(int(proc.name), signal.SIGKILL)
            return int(proc.name)
    return None


def _newest_table(index_uri: str):
    """The table being built (live or not), or None before the job registered it."""
    ref = TableRef.parse(index_uri)
    if not Catalog(ref.db_uri, ref.name).exists():
        return None
    name = resolve_table(ref.db_uri, ref.name, newest_if_no_live=True)
    db = connect(ref.db_uri)
    return db.open_table(name) if table_exists(db, name) else None


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("many")
    write_sample_archive(out, n=24, seed=7)
    return out


@pytest.mark.slow
def test_driver_sigkill_twice_then_finish_exact_rows(ray_session, s3_server, many_videos, tiny_model_dir, tmp_path):
    bucket = "kill-test"
    s3_server.create_bucket(bucket)
    s3_server.upload_dir(many_videos, bucket, "v/")
    expected = set(list_videos(f"s3://{bucket}/v/", s3=s3_server.options()).column(S.VIDEO_ID).to_pylist())
    index = str(tmp_path / "db" / "videos")
    cmd = [sys.executable, str(REPO / "ray_jobs" / "embed.py"), "--no-progress", f"input.source=s3://{bucket}/v/",
           f"model.path={tiny_model_dir}", f"output.table={index}", "output.commit_rows=1", "embed.batch_size=1",
           "decode.batch_size=1", *s3_overrides(s3_server.endpoint_url)]
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    kills = []
    for target in (3, 10):  # kill once 3 rows are committed, again once 10 are
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 180
        while time.time() < deadline:
            table = _newest_table(index)
            if table is not None and table.count_rows() >= target:
                break
            assert proc.poll() is None, f"driver ended before the kill: {proc.stderr.read().decode()[-2000:]}"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(_newest_table(index).count_rows())
    assert kills[0] < len(expected) and kills[1] < len(expected)
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ids = _ids(SearchSession.open(index, load_model=False).table)
    print(f"\nSIGKILL test: killed at {kills} committed rows; final {len(ids)} rows, expected {len(expected)}")
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected


def test_s3_throttling_and_dropped_connections(ray_session, s3_server, sample_dir, tiny_model_dir, tmp_path):
    bucket = "fault-test"
    s3_server.create_bucket(bucket)
    s3_server.upload_dir(sample_dir, bucket, "v/")
    expected = set(list_videos(f"s3://{bucket}/v/", s3=s3_server.options()).column(S.VIDEO_ID).to_pylist())
    index = str(tmp_path / "db" / "videos")
    with FaultProxy(s3_server.endpoint_url) as proxy:
        proxy.fail_every = 4  # every 4th request: 503 SlowDown
        proxy.truncate_every = 3  # every 3rd object GET: half the body, then the connection drops
        assert embed_main(["--no-progress", f"input.source=s3://{bucket}/v/", f"model.path={tiny_model_dir}",
                           f"output.table={index}", *s3_overrides(proxy.endpoint_url)]) == 0
        injected_503, requests = proxy.count(503), len(proxy.requests)
    ids = _ids(SearchSession.open(index, load_model=False).table)
    print(f"\nS3 fault test: {requests} requests, {injected_503} x 503 SlowDown, truncated every 3rd GET; "
          f"{len(ids)} rows, expected {len(expected)}")
    assert injected_503 >= 5
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected


@pytest.mark.slow
def test_embed_actor_killed_mid_run(ray_session, many_videos, tiny_model_dir, tmp_path):
    index = str(tmp_path / "db" / "videos")
    cmd = [sys.executable, str(REPO / "ray_jobs" / "embed.py"), "--no-progress", f"input.source={many_videos}",
           f"model.path={tiny_model_dir}", f"output.table={index}", "output.commit_rows=1", "embed.batch_size=1",
           "decode.batch_size=1"]
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.time() + 120
    while killed is None and time.time() < deadline and proc.poll() is None:
        table = _newest_table(index)
        if table is not None and table.count_rows() >= 2:
            killed = _kill_process_titled("MapBatches(EmbedStage)")
        time.sleep(0.1)
    _, err = proc.communicate(timeout=300)
    assert killed is not None, "the embed actor was never seen alive mid-run"
    assert proc.returncode == 0, err[-3000:]
    ids = _ids(SearchSession.open(index, load_model=False).table)
    assert len(ids) == len(set(ids)) == 24


@pytest.mark.slow
def test_incremental_add_modify_delete(ray_session, tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "src"
    write_sample_archive(src, n=10, seed=3)
    index = str(tmp_path / "db" / "videos")
    args = ["--no-progress", f"input.source={src}", f"model.path={tiny_model_dir}", f"output.table={index}"]
    assert embed_main(args) == 0
    before = {r[S.URI]: r for r in SearchSession.open(index, load_model=False).table.to_arrow().to_pylist()}
    # add 5, modify 2 (new content, same name), delete 1
    extra = tmp_path / "extra"
    for p in write_sample_archive(extra, n=5, seed=11):
        p.rename(src / f"new_{p.name}")
    for name, seed in (("clip_0001.mp4", 91), ("clip_0002.mp4", 92)):
        time.sleep(0.01)  # a distinct mtime even on coarse clocks
        encode_video(src / name, make_clip_frames(64, 96, 12, seed), fps=10)
    (src / "clip_0003.mp4").unlink()
    capsys.readouterr()
    assert embed_main([*args, "output.on_deleted=prune"]) == 0
    out = capsys.readouterr().out
    assert "already embedded 7, permanently failed 0, processed 7" in out  # 10 - 2 modified - 1 deleted = 7 kept
    assert "1 rows of deleted objects pruned" in out
    after = {r[S.URI]: r for r in SearchSession.open(index, load_model=False).table.to_arrow().to_pylist()}
    assert len(after) == 14 and str(src / "clip_0003.mp4") not in after
    changed = {u for u in after if u not in before or after[u][S.CREATED_AT] != before[u][S.CREATED_AT]}
    assert changed == {str(src / "clip_0001.mp4"), str(src / "clip_0002.mp4")} | {
        str(p) for p in src.glob("new_*.mp4")}
    for u in (str(src / "clip_0001.mp4"), str(src / "clip_0002.mp4")):
        assert not np.allclose(after[u][S.EMBEDDING], before[u][S.EMBEDDING])


@pytest.mark.slow
def test_reembed_new_version_switches_atomically(ray_session, sample_dir, tiny_model_dir, tmp_path_factory,
                                                 tmp_path):
    from tara_batch.cli import main as cli
    from tara_batch.models.tiny import build_tiny_model

    model_b = build_tiny_model(tmp_path_factory.mktemp("model-b"), seed=1)
    index = str(tmp_path / "db" / "videos")
    base = ["--no-progress", f"input.source={sample_dir}", f"output.table={index}"]
    assert embed_main([*base, f"model.path={tiny_model_dir}"]) == 0
    a = SearchSession.open(index, load_model=False)
    model_a = a.metadata["model_id"]
    probe = a.table.to_arrow().slice(0, 1).to_pylist()[0]

    def live_vector() -> tuple[str, np.ndarray]:
        s = SearchSession.open(index, load_model=False)
        hit = s.by_vector(np.asarray(probe[S.EMBEDDING], np.float32), 1)
        row = s.table.search().where(f"{S.VIDEO_ID} = '{hit.column(S.VIDEO_ID)[0].as_py()}'").limit(1).to_arrow()
        return s.metadata["model_id"], np.asarray(row.column(S.EMBEDDING)[0].as_py())

    # partial backfill of B: search still answers from A
    assert embed_main([*base, f"model.path={model_b}", "input.limit=6"]) == 0
    st = index_status(index)
    assert st["live"] == model_a
    states = {v["model_id"]: (v["state"], v["rows"]) for v in st["versions"]}
    assert len(states) == 2 and states[model_a] == ("complete", 22)
    model_b_id = next(m for m in states if m != model_a)
    assert states[model_b_id] == ("building", 6)
    assert live_vector()[0] == model_a
    # full backfill through the scheduled job script: B completes and becomes live in one switch
    from ray_jobs.reembed import main as reembed_main

    assert reembed_main([*base, f"model.path={model_b}"]) == 0
    assert index_status(index)["live"] == model_b_id
    live_id, vec = live_vector()
    assert live_id == model_b_id and not np.allclose(vec, probe[S.EMBEDDING])
    # old version stays until pruned
    assert cli(["-q", "prune", "--table", index]) == 0
    assert [v["model_id"] for v in index_status(index)["versions"]] == [model_b_id]
    assert cli(["-q", "status", "--table", index]) == 0


@pytest.mark.slow
def test_failure_ledger_retry_policy_and_max_rate(ray_session, sample_dir, tiny_model_dir, tmp_path, capsys):
    from tara_batch.index.status import open_failures
    from tara_batch.video.samples import write_bad_videos

    src = tmp_path / "mixed"
    src.mkdir()
    for p in sorted(sample_dir.glob("*.mp4"))[:2]:
        (src / p.name).write_bytes(p.read_bytes())
    n_bad = len(write_bad_videos(src))
    index = str(tmp_path / "db" / "videos")
    args = ["--no-progress", f"input.source={src}", f"model.path={tiny_model_dir}", f"output.table={index}",
            "input.extensions=null"]
    # mostly bad files: over a 50% limit once 4 videos are in -> stopped, committed rows kept, exit code 3
    assert embed_main([*args, "failures.max_rate=0.5", "failures.min_videos=4"]) == 3
    # with the default minimum (20 videos) it runs to the end; bad files are permanent failures
    assert embed_main(args) == 0
    assert len(open_failures(index)) == n_bad
    capsys.readouterr()
    assert embed_main(args) == 0  # rerun: permanent failures of unchanged objects are not retried
    assert f"permanently failed {n_bad}, processed 0" in capsys.readouterr().out
    assert embed_main([*args, "--retry-failed"]) == 0  # ... unless asked: attempt numbers grow
    attempts = {r["uri"].rsplit("/", 1)[-1]: r["attempt"] for r in open_failures(index).to_pylist()}
    assert set(attempts.values()) == {2}
    assert SearchSession.open(index, load_model=False).table.count_rows() == 2
