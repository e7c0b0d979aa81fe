"""Unit tests for tara_batch.isolation: a sampler in a child process whose crashes fail one video, not the caller.

Crashes here are real: the test-only `crash-test` inner sampler dereferences NULL (SIGSEGV), aborts or exits inside
the child, and decord 0.6 itself segfaults on `truncated_720p.mp4` once its PyAV pre-check is switched off.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tara_batch.video.frames import DecodeError, FrameSampler
from tara_batch.video.isolation import TEST_HOOKS_ENV, IsolatedSampler
from tara_batch.video.registry import SAMPLERS, get_sampler
from tara_batch.video.samples import BAD_VIDEO_KINDS, write_bad_videos, write_edge_videos, write_sample_archive

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc to check processes")

CAP = 600  # pixels per frame: every test clip is resized
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("isolation")
    good = {p.name: p for p in write_sample_archive(root / "good", n=4, seed=2)}
    good.update(write_edge_videos(root / "edge"))
    return good


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return write_bad_videos(tmp_path_factory.mktemp("isolation-bad"))


@pytest.fixture(autouse=True)
def _test_hooks(monkeypatch):
    monkeypatch.setenv(TEST_HOOKS_ENV, "1")  # the child inherits the environment at start


@pytest.fixture(scope="module")
def crash_sampler():
    os.environ[TEST_HOOKS_ENV] = "1"
    try:
        with IsolatedSampler("crash-test", timeout_s=2.0) as sampler:
            yield sampler
    finally:
        os.environ.pop(TEST_HOOKS_ENV, None)


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a reaped or exited child is dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_dead(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _same(a, b) -> None:
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.indices, b.indices)
    assert a.source_frames == b.source_frames
    assert np.array_equal([a.fps, a.duration], [b.fps, b.duration], equal_nan=True)


# ---------------------------------------------------------------------------------------------------------------
# Same answers as in-process


@pytest.mark.parametrize("name", SAMPLERS)
def test_same_frames_and_errors_as_in_process(corpus, bad, name):
    local = get_sampler(name)
    with IsolatedSampler(name) as isolated:
        assert isolated.name == name and isinstance(isolated, FrameSampler)
        for path in corpus.values():
            data = path.read_bytes()
            for num_frames in (1, 8, 64):
                _same(isolated.sample(data, num_frames, CAP), local.sample(data, num_frames, CAP))
        for file_name, kind in BAD_VIDEO_KINDS.items():
            with pytest.raises(DecodeError) as caught:
                isolated.sample(bad[file_name].read_bytes(), 8, CAP)
            assert caught.value.kind == kind, (file_name, str(caught.value))
        assert isolated.restarts == 0


def test_large_input_round_trip():
    # 24 MiB through the socket both ways is not a special case (partial reads, socket buffers).
    data = np.random.default_rng(0).integers(0, 256, 24 << 20, dtype=np.uint8).tobytes()
    with IsolatedSampler("pyav") as sampler, pytest.raises(DecodeError) as caught:
        sampler.sample(data, 8, CAP)
    assert caught.value.kind == "corrupt"


def test_max_source_pixels_reaches_the_child(corpus):
    with IsolatedSampler("pyav", max_source_pixels=1000) as sampler, pytest.raises(DecodeError) as caught:
        sampler.sample(corpus["clip_0000.mp4"].read_bytes(), 4, CAP)
    assert caught.value.kind == "too_large"


# ---------------------------------------------------------------------------------------------------------------
# Crashes and timeouts fail one video; the next one works


@pytest.mark.parametrize(
    ("how", "expected"),
    [("SEGV", "signal 11 (SIGSEGV)"), ("ABORT", "signal 6 (SIGABRT)"), ("EXIT", "exited with code 3")],
)
def test_crash_fails_one_video_and_restarts(crash_sampler, corpus, how, expected):
    data = corpus["clip_0001.mp4"].read_bytes()
    reference = get_sampler("pyav").sample(data, 8, CAP)
    _same(crash_sampler.sample(data, 8, CAP), reference)
    pid, restarts = crash_sampler.pid, crash_sampler.restarts
    with pytest.raises(DecodeError) as caught:
        crash_sampler.sample(f"CRASH:{how}".encode(), 8, CAP)
    assert caught.value.kind == "decoder_crash"
    assert expected in caught.value.message and f"pid {pid}" in caught.value.message
    assert not _alive(pid)  # really dead, and reaped
    _same(crash_sampler.sample(data, 8, CAP), reference)  # a new child, same answer
    assert crash_sampler.pid != pid and crash_sampler.restarts == restarts + 1


def test_timeout_kills_the_child_and_fails_one_video(crash_sampler, corpus):
    data = corpus["clip_0002.mp4"].read_bytes()
    pid = crash_sampler.pid
    start = time.monotonic()
    with pytest.raises(DecodeError) as caught:
        crash_sampler.sample(b"CRASH:HANG", 8, CAP)
    elapsed = time.monotonic() - start
    assert caught.value.kind == "decoder_crash" and "timeout" in caught.value.message
    assert 2.0 <= elapsed < 4.0
    assert not _alive(pid)
    _same(crash_sampler.sample(data, 8, CAP), get_sampler("pyav").sample(data, 8, CAP))


def test_ordinary_errors_pass_through_without_restart(crash_sampler):
    pid = crash_sampler.pid
    with pytest.raises(RuntimeError, match="raised on request"):
        crash_sampler.sample(b"CRASH:RAISE", 8, CAP)
    with pytest.raises(DecodeError) as caught:
        crash_sampler.sample(b"", 8, CAP)
    assert caught.value.kind == "empty"
    with pytest.raises(ValueError):
        crash_sampler.sample(b"x", 0, CAP)
    with pytest.raises(ValueError):
        crash_sampler.sample(b"x", 8, 0)
    assert crash_sampler.pid == pid


def test_child_killed_while_idle_is_replaced_without_failing_a_video(crash_sampler, corpus):
    pid, restarts = crash_sampler.pid, crash_sampler.restarts
    os.kill(pid, signal.SIGKILL)
    # Block until the child is waitable (all its threads gone), without reaping it: the sampler must find it dead.
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    data = corpus["clip_0000.mp4"].read_bytes()
    _same(crash_sampler.sample(data, 4, CAP), get_sampler("pyav").sample(data, 4, CAP))
    assert crash_sampler.pid != pid and crash_sampler.restarts == restarts + 1


def test_child_ignores_sigint(crash_sampler, corpus):
    # Ctrl-C reaches the whole process group; the parent, not the decoder, decides what stops.
    pid = crash_sampler.pid
    os.kill(pid, signal.SIGINT)
    time.sleep(0.2)
    assert crash_sampler.sample(corpus["clip_0000.mp4"].read_bytes(), 2, CAP).frames.shape[0] == 2
    assert crash_sampler.pid == pid


def _decord_segfaults_here(path: Path) -> bool:
    script = "import sys; from tara_batch.video.decord_sampler import DecordSampler; "
    script += "DecordSampler(precheck=False).sample(open(sys.argv[1], 'rb').read(), 8, 600)"
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, timeout=120, cwd=REPO, check=False
    )
    return result.returncode == -signal.SIGSEGV


def test_real_decord_segfault_is_contained(bad, corpus):
    crasher = bad["truncated_720p.mp4"]
    if not _decord_segfaults_here(crasher):
        pytest.skip("decord does not segfault on truncated_720p.mp4 with this build")
    data = corpus["clip_0003.mp4"].read_bytes()
    with IsolatedSampler("decord", inner_options={"precheck": False}) as sampler:
        pid = sampler.pid
        with pytest.raises(DecodeError) as caught:
            sampler.sample(crasher.read_bytes(), 8, CAP)
        assert caught.value.kind == "decoder_crash" and "SIGSEGV" in caught.value.message
        _same(sampler.sample(data, 8, CAP), get_sampler("decord").sample(data, 8, CAP))
        assert sampler.pid != pid
    # With the pre-check on (the default), the same bytes are a plain 'corrupt' and the child survives.
    with get_sampler("decord", isolate=True) as sampler:
        pid = sampler.pid
        with pytest.raises(DecodeError) as caught:
            sampler.sample(crasher.read_bytes(), 8, CAP)
        assert caught.value.kind == "corrupt" and sampler.pid == pid


# ---------------------------------------------------------------------------------------------------------------
# Lifecycle: no orphans


def test_close_context_manager_and_garbage_collection(corpus):
    with IsolatedSampler("pyav") as sampler:
        pid = sampler.pid
        assert _alive(pid)
    assert _wait_dead(pid)
    sampler.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        sampler.sample(corpus["clip_0000.mp4"].read_bytes(), 2, CAP)
    dropped = IsolatedSampler("pyav")
    pid = dropped.pid
    del dropped
    gc.collect()
    assert _wait_dead(pid)


PARENT = textwrap.dedent(
    """
    import os, sys, threading, time
    from tara_batch.video.isolation import IsolatedSampler
    sampler = IsolatedSampler("crash-test", timeout_s=600)
    print(sampler.pid, flush=True)
    mode = sys.argv[1]
    if mode == "exit":
        sys.exit(0)  # no close(): the finalizer runs at interpreter exit
    if mode == "hard-exit":
        os._exit(0)  # no finalizers at all: the child sees EOF
    if mode == "busy":
        threading.Thread(target=sampler.sample, args=(b"CRASH:HANG", 8, 600), daemon=True).start()
        time.sleep(0.3)
    print("ready", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("mode", ["exit", "hard-exit", "killed-idle", "busy"])
def test_child_never_outlives_its_parent(mode):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, TEST_HOOKS_ENV: "1"},
    )
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        if mode in ("killed-idle", "busy"):
            assert parent.stdout.readline().strip() == "ready"
            parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait(timeout=30)
        # Busy: the child is inside a decode that would take an hour; its watchdog notices the new parent.
        assert _wait_dead(child, 5.0), f"decoder child {child} outlived its parent ({mode})"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.wait()


# ---------------------------------------------------------------------------------------------------------------
# API


def test_get_sampler_isolate_and_argument_checks(monkeypatch):
    for name in SAMPLERS:
        with get_sampler(name, isolate=True, timeout_s=7.0, max_source_pixels=10**7) as sampler:
            assert isinstance(sampler, IsolatedSampler)
            assert (sampler.name, sampler.timeout_s, sampler.max_source_pixels) == (name, 7.0, 10**7)
    with pytest.raises(ValueError, match="pyav, decord"):
        get_sampler("opencv", isolate=True)
    with pytest.raises(ValueError):
        IsolatedSampler("opencv")
    with pytest.raises(ValueError):
        IsolatedSampler("pyav", timeout_s=0)
    with pytest.raises(ValueError):
        IsolatedSampler("pyav", threads=0)
    monkeypatch.delenv(TEST_HOOKS_ENV)
    with pytest.raises(ValueError, match=TEST_HOOKS_ENV):
        IsolatedSampler("crash-test")


def test_child_start_failure_is_a_clear_error():
    with pytest.raises(RuntimeError, match="failed to start"):
        IsolatedSampler("decord", inner_options={"no_such_option": 1})


def test_per_video_overhead_is_small(corpus):
    # Small clips: the work is ~ms, so this is mostly the transfer and the pickled frames. Generous bound (CI noise);
    # benchmarks/memory.py reports the measured figure.
    data = corpus["clip_0001.mp4"].read_bytes()
    local = get_sampler("pyav")
    with IsolatedSampler("pyav") as isolated:
        isolated.sample(data, 8, CAP)  # warm up
        local.sample(data, 8, CAP)
        timings = {"local": [], "isolated": []}
        for _ in range(15):
            for label, sampler in (("local", local), ("isolated", isolated)):
                start = time.perf_counter()
                sampler.sample(data, 8, CAP)
                timings[label].append(time.perf_counter() - start)
    overhead = np.median(timings["isolated"]) - np.median(timings["local"])
    assert overhead < 0.02, f"isolation adds {overhead * 1000:.1f} ms per video"
