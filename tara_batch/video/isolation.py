"""Crash containment: run a frame sampler in a long-lived child process, so a decoder crash fails one video only.

What: `IsolatedSampler("decord")` has the `FrameSampler` interface (`sample(data, num_frames, max_pixels) ->
DecodedVideo`) and gives the same frames as `get_sampler("decord")`, but the decoding happens in a child interpreter
that is started once and reused. If the child dies while sampling a video (SIGSEGV, SIGABRT, any exit) or takes
longer than `timeout_s`, that video raises `DecodeError("decoder_crash", <signal or exit code>)`, the child is
restarted on the next call, and the caller carries on. Ordinary bad inputs still raise their usual `DecodeError`.
`get_sampler(name, isolate=True)` returns one.

Why: decord 0.6 segfaults on some truncated MP4s read from memory (docs: stack-notes "Video decoding"), and a
segfault in a Ray decode actor kills every video of its batch and the actor with them. The PyAV pre-check in
`DecordSampler` avoids the known crash; this is the safety net for the crashes nobody anticipated (native decoders,
any backend). How the child is started and why:
* Fork + exec of a fresh interpreter (`subprocess.Popen`), never a bare fork: the parent may hold threads (Ray,
  LanceDB, torch) whose locks a forked child would inherit in a held state. This is the primitive multiprocessing's
  "spawn" start method uses too (`_posixsubprocess.fork_exec`); multiprocessing itself is not used because its spawn
  re-imports the parent's `__main__` in the child, which in a Ray actor is Ray's `default_worker.py` (`import ray`
  in every decoder child) and in user scripts without a main guard re-runs the script.
* One socketpair carries everything: the input bytes go raw (no pickling, no extra copy on either side), the result
  comes back as a pickled `DecodedVideo` (numpy frames) or a pickled exception.
* No orphans: the child exits on EOF from the parent (parent closed, exited or was killed: the kernel closes its
  end) and a watchdog thread in the child exits when its parent process changes (covers a parent killed while the
  child is busy decoding, or a parent end of the socket leaked into a forked grandchild). `close()`, `with` and
  garbage collection stop the child explicitly. SIGINT is ignored in the child: Ctrl-C in a terminal goes to the
  whole process group, and the parent decides what stops.

Cost (benchmarks/memory.py, 2 shared and busy cores, so medians are noisy): one child per sampler, started once in
0.2-0.7 s (imports of PyAV, numpy, decord), 54-70 MiB RSS idle. Per video the input bytes go to the child and the
sampled frames come back pickled (8 frames at the TARA cap of 460,800 pixels = 11 MB), at about 1.3 GB/s: 0.1 ms for
10 kB, 0.3 ms for 1 MB, 2 ms for 10 MB. Measured overhead: 0-3 ms on tiny clips, 6-44 ms on a 10 s 720p clip that
takes ~300 ms (2-15%). Memory: while a video is sampled its bytes are held twice, by the caller and by the child
(10-minute 1080p, 427 MiB file: 1,022 MiB total instead of 527 MiB in-process). The child gives freed heap back
to the OS after heavy videos (`video.heap.HeapTrimmer`); its RSS stays flat over 1,500 videos.

How to run (library module):
    from tara_batch.video.isolation import IsolatedSampler
    with IsolatedSampler("decord") as sampler:
        video = sampler.sample(open("clip.mp4", "rb").read(), num_frames=8, max_pixels=460_800)
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tara_batch.video.decord_sampler import DecordSampler
from tara_batch.video.frames import SAMPLERS, DecodedVideo, DecodeError
from tara_batch.video.heap import HeapTrimmer
from tara_batch.video.pyav_sampler import PyAVSampler

logger = logging.getLogger(__name__)

# Test-only inner sampler (`CrashTestSampler`): usable only when this variable is "1" in the parent's environment
# (the child inherits it). Production configs cannot reach it: `decode.backend` accepts SAMPLERS only.
TEST_HOOKS_ENV = "TARA_BATCH_TEST_HOOKS"
CRASH_TEST_SAMPLER = "crash-test"

# num_frames, max_pixels, segment length and stride in seconds (0 = whole video), first and stop window (stop 0 = all
# windows), payload bytes; then the payload
_REQUEST = struct.Struct("!QQddQQQ")
_REPLY = struct.Struct("!BQ")  # status, pickle bytes; then the pickle
_READY, _OK, _ERROR = 1, 2, 3
_START_TIMEOUT_S = 120.0  # importing PyAV/decord on a cold, busy node can take a while
_STOP_TIMEOUT_S = 5.0
_WATCHDOG_PERIOD_S = 0.5


class IsolatedSampler:
    """`FrameSampler` that samples in a long-lived child process; a crash or timeout fails one video only.

    `inner_name` is a backend of `tara_batch.video.frames.SAMPLERS`; `threads` and `max_source_pixels` are passed to it,
    and so are `inner_options` (JSON-serialisable constructor keywords, e.g. `{"precheck": False}` for decord).
    `timeout_s` bounds one `sample` call, including the transfer of the bytes. Calls from several threads are
    serialised by a lock (one child, one video at a time).
    """

    def __init__(
        self,
        inner_name: str,
        threads: int = 1,
        *,
        timeout_s: float = 120.0,
        max_source_pixels: int | None = None,
        inner_options: Mapping[str, Any] | None = None,
    ) -> None:
        if inner_name == CRASH_TEST_SAMPLER:
            if os.environ.get(TEST_HOOKS_ENV) != "1":
                raise ValueError(f"sampler {CRASH_TEST_SAMPLER!r} is for tests only: set {TEST_HOOKS_ENV}=1")
        elif inner_name not in SAMPLERS:
            raise ValueError(f"unknown frame sampler {inner_name!r}; valid choices: {', '.join(SAMPLERS)}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.name = inner_name
        self.threads = threads
        self.timeout_s = float(timeout_s)
        self.max_source_pixels = max_source_pixels
        self._spec = json.dumps(
            {
                "name": inner_name,
                "threads": threads,
                "max_source_pixels": max_source_pixels,
                "options": dict(inner_options or {}),
            }
        )
        self._lock = threading.Lock()
        self._slot = _Slot()
        self._closed = False
        self.restarts = 0  # children started after a crash or timeout
        # Runs on garbage collection and at interpreter exit (weakref.finalize registers with atexit).
        self._finalizer = weakref.finalize(self, self._slot.stop)
        self._start()  # eagerly: a missing decoder library fails at construction, not on the first video

    # -- public API ------------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process id of the current child (None before a restart)."""
        child = self._slot.child
        return child.process.pid if child is not None else None

    def sample(self, data: bytes, num_frames: int, max_pixels: int,
               segments: tuple[float, float] | None = None, windows: tuple[int, int] | None = None) -> DecodedVideo:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if segments is not None and not (segments[0] > 0 and segments[1] > 0):
            raise ValueError(f"segment length and stride must be > 0, got {segments}")
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        with self._lock:
            if self._closed:
                raise RuntimeError("IsolatedSampler is closed")
            idle = self._slot.child
            if idle is not None and idle.process.poll() is not None:
                # Died between videos (OOM killer, an operator's kill): not this video's fault.
                self._slot.child = None
                logger.warning("%s decoder process %s while idle; restarting it", self.name, idle.stop(kill=False))
            if self._slot.child is None:
                self.restarts += 1
                self._start()
            child = self._slot.child
            assert child is not None
            status, payload = child.request(data, num_frames, max_pixels, segments, windows, self.timeout_s)
            if status == _OK:
                return pickle.loads(payload)
            if status == _ERROR:
                raise _load_error(payload)
            # The child is dead or hung: reap it, report this video, restart on the next call. A dead child is only
            # waited for (killing it first would replace its real signal with SIGKILL); a hung one is killed.
            self._slot.child = None
            description = child.stop(kill=status == "timeout")
            what = f"exceeded the {self.timeout_s:g} s timeout and was killed" if status == "timeout" else description
            message = f"{self.name} decoder process (pid {child.process.pid}) {what} while sampling {len(data)} bytes"
            logger.warning("%s; restarting it", message)
            raise DecodeError("decoder_crash", message)

    def close(self) -> None:
        """Stop the child (EOF, then SIGKILL after 5 s). Idempotent; `sample` raises afterwards."""
        with self._lock:
            self._closed = True
        self._finalizer()  # runs _Slot.stop once

    def __enter__(self) -> IsolatedSampler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------------------

    def _start(self) -> None:
        self._slot.child = _Child.start(self._spec)


class _Slot:
    """The current child, held outside the sampler so that the finalizer does not keep the sampler alive."""

    def __init__(self) -> None:
        self.child: _Child | None = None

    def stop(self) -> None:
        child, self.child = self.child, None
        if child is not None:
            child.stop(kill=False)


def _load_error(payload: bytes) -> BaseException:
    try:
        error = pickle.loads(payload)
    except Exception as unpickle_error:  # pragma: no cover - _dump_error already falls back to a RuntimeError
        return RuntimeError(f"decoder process raised an exception that cannot be unpickled: {unpickle_error}")
    return error if isinstance(error, BaseException) else RuntimeError(repr(error))


def _dump_error(error: BaseException) -> bytes:
    try:
        payload = pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(payload)  # some exceptions pickle but do not unpickle (custom __init__ signatures)
        return payload
    except Exception:
        return pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"), protocol=pickle.HIGHEST_PROTOCOL)


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "did not exit"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


class _Child:
    """One child process and the parent's end of its socket."""

    def __init__(self, process: subprocess.Popen, sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self._stopped = False

    @classmethod
    def start(cls, spec: str) -> _Child:
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        # Import tara_batch in the child from wherever the parent imported it (a checkout, a Ray working_dir).
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        fd = child_sock.fileno()
        command = [
            sys.executable,
            "-c",
            "import sys; from tara_batch.video.isolation import _child_main; _child_main(int(sys.argv[1]), sys.argv[2])",
            str(fd),
            spec,
        ]
        try:
            process = subprocess.Popen(command, pass_fds=(fd,), stdin=subprocess.DEVNULL, env=env, close_fds=True)
        finally:
            child_sock.close()  # only the child holds it now: its death means EOF for us
        child = cls(process, parent_sock)
        status, payload = child._read_reply(time.monotonic() + _START_TIMEOUT_S)
        if status != _READY:
            reason = child.stop(kill=True)
            if status == _ERROR:
                raise RuntimeError(f"decoder process failed to start: {_load_error(payload)!r}")
            raise RuntimeError(f"decoder process {reason} during start-up ({status})")
        return child

    def request(self, data: bytes, num_frames: int, max_pixels: int, segments: tuple[float, float] | None,
                windows: tuple[int, int] | None, timeout_s: float) -> tuple[Any, bytes]:
        """(status, payload): _OK/_ERROR with a pickle, or 'died'/'timeout' with b''."""
        deadline = time.monotonic() + timeout_s
        length, stride = segments if segments is not None else (0.0, 0.0)
        first, stop = (max(0, windows[0]), max(windows[0] + 1, windows[1])) if windows is not None else (0, 0)
        try:
            self.sock.settimeout(timeout_s)
            self.sock.sendall(_REQUEST.pack(num_frames, max_pixels, length, stride, first, stop, len(data)))
            if len(data):
                self.sock.sendall(memoryview(data))
        except TimeoutError:
            return "timeout", b""
        except OSError:  # BrokenPipe / ConnectionReset: the child died while reading the bytes
            return "died", b""
        return self._read_reply(deadline)

    def _read_reply(self, deadline: float) -> tuple[Any, bytes]:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
            return "timeout", b""
        try:
            self.sock.settimeout(max(1.0, deadline - time.monotonic()))
            header = _recv_exact(self.sock, _REPLY.size)
            if header is None:
                return "died", b""
            status, size = _REPLY.unpack(header)
            payload = _recv_exact(self.sock, size) if size else b""
        except TimeoutError:
            return "timeout", b""
        except OSError:
            return "died", b""
        if payload is None:
            return "died", b""
        return status, payload

    def stop(self, *, kill: bool) -> str:
        """Stop the child and reap it; returns how it ended (for messages)."""
        if not self._stopped:
            self._stopped = True
            if kill and self.process.poll() is None:
                self.process.kill()
            self.sock.close()  # EOF: an idle child exits on its own
            try:
                self.process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return _describe_exit(self.process.returncode)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Exactly `size` bytes, or None on EOF. One allocation in the common case (MSG_WAITALL fills it at once)."""
    chunk = sock.recv(size, socket.MSG_WAITALL)
    if len(chunk) == size:
        return chunk
    chunks, received = [chunk], len(chunk)
    while received < size:  # a signal interrupted MSG_WAITALL, or EOF
        chunk = sock.recv(size - received, socket.MSG_WAITALL)
        if not chunk:
            return None
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------------------------
# Child side.


class CrashTestSampler:
    """TEST ONLY: a PyAV sampler that really kills its process on request, to test crash containment.

    Input starting with b"CRASH:" selects the failure: SEGV (reads address 0: a real SIGSEGV), ABORT (os.abort:
    SIGABRT), EXIT (os._exit(3)), HANG (sleeps far past any timeout), RAISE (a plain RuntimeError), PID (returns
    normally after writing the child's pid into `fps`, for tests that need it). Anything else is sampled by PyAV.
    Constructed only in the child of an IsolatedSampler, only with TARA_BATCH_TEST_HOOKS=1.
    """

    name = CRASH_TEST_SAMPLER

    def __init__(self, threads: int = 1, *, max_source_pixels: int | None = None, allow_stills: bool = False) -> None:
        if os.environ.get(TEST_HOOKS_ENV) != "1":
            raise RuntimeError(f"{CRASH_TEST_SAMPLER} needs {TEST_HOOKS_ENV}=1")
        self._pyav = PyAVSampler(threads, max_source_pixels=max_source_pixels, allow_stills=allow_stills)

    def sample(self, data: bytes, num_frames: int, max_pixels: int,
               segments: tuple[float, float] | None = None, windows: tuple[int, int] | None = None) -> DecodedVideo:
        if data.startswith(b"CRASH:"):
            how = bytes(data[6:12]).split(b"\n")[0].strip()
            if how == b"SEGV":
                import ctypes

                ctypes.string_at(0)  # dereferences NULL: SIGSEGV
            elif how == b"ABORT":
                os.abort()
            elif how == b"EXIT":
                os._exit(3)
            elif how == b"HANG":
                time.sleep(3600)
            elif how == b"RAISE":
                raise RuntimeError("crash-test: raised on request")
            elif how == b"PID":
                import numpy as np

                empty = np.zeros((0, 1, 1, 3), np.uint8)
                return DecodedVideo(empty, np.zeros(0, np.int64), 0, float(os.getpid()), float(os.getppid()))
        return self._pyav.sample(data, num_frames, max_pixels, segments, windows)


def _make_inner(spec: Mapping[str, Any]) -> Any:

    classes = {"pyav": PyAVSampler, "decord": DecordSampler, CRASH_TEST_SAMPLER: CrashTestSampler}
    cls = classes[spec["name"]]
    return cls(spec["threads"], max_source_pixels=spec["max_source_pixels"], **spec["options"])


def _watch_parent(parent_pid: int) -> None:
    # Reparenting (to init or a subreaper) means the parent process is gone; exit even in the middle of a decode.
    while True:
        time.sleep(_WATCHDOG_PERIOD_S)
        if os.getppid() != parent_pid:
            os._exit(0)


def _send_reply(sock: socket.socket, status: int, payload: bytes) -> None:
    sock.sendall(_REPLY.pack(status, len(payload)))
    if payload:
        sock.sendall(payload)


def _child_main(fd: int, spec_json: str) -> None:
    """Entry point of the child: build the inner sampler, then serve requests until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="parent-watchdog").start()
    sock = socket.socket(fileno=fd)
    try:
        sampler = _make_inner(json.loads(spec_json))
    except BaseException as error:
        _send_reply(sock, _ERROR, _dump_error(error))
        return
    _send_reply(sock, _READY, b"")
    trimmer = HeapTrimmer()
    while True:
        try:
            header = _recv_exact(sock, _REQUEST.size)
        except OSError:
            header = None
        if header is None:
            return  # the parent closed its end or died
        num_frames, max_pixels, length, stride, first, stop, size = _REQUEST.unpack(header)
        data = _recv_exact(sock, size) if size else b""
        if data is None:
            return
        trimmer.before()
        try:
            result = sampler.sample(data, num_frames, max_pixels, (length, stride) if length > 0 else None,
                                    (first, stop) if stop > 0 else None)
            status, reply = _OK, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            del result
        except BaseException as error:  # every exception goes back to the caller, who decides
            status, reply = _ERROR, _dump_error(error)
        del data
        try:
            _send_reply(sock, status, reply)
        except OSError:
            return
        del reply
        trimmer.after()  # after the reply, so the caller never waits for a trim
