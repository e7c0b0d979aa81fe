"""The default frame sampler: PyAV with exact keyframe seeks, frames identified by presentation timestamp.

Memory stays bounded by the input bytes, the decoder's reference frames, one full-resolution frame and the small
resized outputs: videos arrive as bytes, are read through `io.BytesIO` (never temp files) and are never fully decoded
into memory. Measured peak over the interpreter's baseline (benchmarks/memory.py), 8 frames: input + ~20 MiB at
360p, + ~50 MiB at 1080p (10-minute clip: 527 MiB for a 427 MiB file), + ~140 MiB at 4K. The demux-only packet pass
keeps ~30 bytes per packet. Frames are found by pts from that pass, so the result equals a full decode on constant
*and* variable frame rate files. Bad inputs raise `DecodeError`; no raw PyAV exception escapes `sample`.

    from tara_batch.video.pyav_sampler import PyAVSampler
    video = PyAVSampler().sample(open("clip.mp4", "rb").read(), num_frames=8, max_pixels=460_800)
    video.frames.shape  # (8, h, w, 3) uint8, h * w <= 460_800
"""

from __future__ import annotations

import io
import itertools
import logging
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import av.error
import numpy as np

from tara_batch.video.frames import (
    DecodedVideo,
    DecodeError,
    FrameShaper,
    assemble_video,
    plan_frames,
    rotation_to_quarter_turns,
)

logger = logging.getLogger(__name__)


def _av_error_kind(error: BaseException) -> str:
    if isinstance(error, (av.error.DecoderNotFoundError, av.error.PatchWelcomeError)):
        return "unsupported_codec"
    return "corrupt"


def _open_container(data: bytes) -> Any:
    """av.open on in-memory bytes; maps 'nothing there' and 'not a media file' to DecodeError."""
    if len(data) == 0:
        raise DecodeError("empty", "zero bytes")
    try:
        return av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError as error:
        raise DecodeError(_av_error_kind(error), f"cannot open container: {error}") from error


def _video_stream(container: Any, max_source_pixels: int | None) -> Any:
    # Checked first: indexing streams.video[0] on an audio-only file raises a bare IndexError.
    if not container.streams:
        # Seen on MP4s cut inside the header: the demuxer opens but finds no track at all. That is damage, not an
        # audio-only file.
        raise DecodeError("corrupt", "container has no streams (truncated header?)")
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams})
        raise DecodeError("no_video_stream", f"container has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise DecodeError("unsupported_codec", f"no decoder for codec id of stream {stream.index}")
    width, height = stream.codec_context.width, stream.codec_context.height
    if max_source_pixels is not None and width * height > max_source_pixels:
        raise DecodeError(
            "too_large", f"{width}x{height} = {width * height} pixels per frame exceeds {max_source_pixels}"
        )
    return stream


def _stream_fps_duration(container: Any, stream: Any) -> tuple[float, float]:
    fps = float(stream.average_rate) if stream.average_rate else math.nan
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base  # container.duration is in AV_TIME_BASE (microseconds)
    else:
        duration = math.nan
    return fps, duration


def _check_index_within_data(stream: Any, size: int) -> None:
    """A container index that points past the end of the bytes means a truncated file.

    Cheap (no demuxing) and catches truncated fast-start MP4s before anything decodes them; this matters most for
    decord, which segfaults on exactly those files when reading from memory.
    """
    for entry in stream.index_entries:
        if entry.pos >= 0 and entry.pos + entry.size > size:
            raise DecodeError(
                "corrupt", f"truncated: index entry at byte {entry.pos} (+{entry.size}) is past the end ({size} bytes)"
            )


def _configure_threads(stream: Any, threads: int) -> None:
    # PyAV's default thread_count is 0 = one thread per core; on shared workers we want exactly `threads`
    # (one single-threaded decoder per core measured ~28% more throughput than decoder threads).
    stream.codec_context.thread_count = threads
    stream.codec_context.thread_type = "AUTO" if threads > 1 else "NONE"


_NO_DTS = np.iinfo(np.int64).min  # stands for a packet without dts in _PacketTable.dts


@dataclass(frozen=True)
class _PacketTable:
    """What a demux-only pass learns about the video stream (no decoding).

    Packets are in decode order (position p); frames are the packets the decoder shows, ranked by pts (display
    index i). One packet = one shown frame holds for the codecs and containers we target (H.264/HEVC/AV1/VP9 in
    MP4/MKV/WebM); packets flagged `discard` (outside an MP4 edit list) are decoded as references but not shown.
    Numpy arrays, not Python lists and dicts: about 30 bytes per packet instead of about 190 (a 2-hour 60 fps
    video has 432,000 packets: ~12 MiB instead of ~80 MiB).
    """

    pts: np.ndarray  # int64 [P] pts per packet, decode order (unique)
    dts: np.ndarray  # int64 [P], _NO_DTS where the packet has none
    keyframe_positions: np.ndarray  # int64 [K] sorted decode positions of keyframe packets
    display_pts: np.ndarray  # int64 [N] sorted pts of shown frames; display index i <-> display_pts[i]
    sorted_pts: np.ndarray  # int64 [P] pts sorted, for lookups
    order: np.ndarray  # int64 [P] decode position of sorted_pts[j]

    def position(self, pts: int) -> int | None:
        """Decode position of the packet with this pts, None if no packet has it."""
        j = int(np.searchsorted(self.sorted_pts, pts))
        if j < len(self.sorted_pts) and self.sorted_pts[j] == pts:
            return int(self.order[j])
        return None

    def timestamps(self, position: int) -> list[int]:
        """[pts, dts] of one packet as Python ints (dts left out when missing)."""
        values = [int(self.pts[position]), int(self.dts[position])]
        return [v for v in values if v != _NO_DTS]


class _NeedSequential(Exception):
    """Timestamps cannot identify frames (missing or duplicate pts): fall back to counting decoded frames."""


def scan_packets(container: Any, stream: Any) -> _PacketTable:
    # array('q') while scanning: 8 bytes per value, where a list of Python ints costs ~36.
    pts, dts, keyframes, shown = array("q"), array("q"), array("q"), array("q")
    missing_pts = False
    for packet in container.demux(stream):
        if packet.size == 0 and packet.pts is None:
            continue  # PyAV's end-of-stream flush packet
        if packet.is_corrupt:
            # The demuxer flags a packet it could only read partly: the bytes end inside the stream.
            raise DecodeError("corrupt", f"truncated or damaged packet at pts {packet.pts}")
        packet_pts = packet.pts
        if packet_pts is None:
            missing_pts = True
            continue
        if not packet.is_discard:
            shown.append(packet_pts)
        if packet.is_keyframe:
            keyframes.append(len(pts))
        packet_dts = packet.dts
        pts.append(packet_pts)
        dts.append(_NO_DTS if packet_dts is None else packet_dts)
    pts_array = np.frombuffer(pts, dtype=np.int64) if len(pts) else np.zeros(0, np.int64)
    order = np.argsort(pts_array, kind="stable")
    sorted_pts = pts_array[order]
    if missing_pts or bool(np.any(sorted_pts[1:] == sorted_pts[:-1])):
        raise _NeedSequential("packets without pts or with duplicate pts")
    return _PacketTable(
        pts=pts_array,
        dts=np.frombuffer(dts, dtype=np.int64) if len(dts) else np.zeros(0, np.int64),
        keyframe_positions=np.array(keyframes, dtype=np.int64),
        display_pts=np.sort(np.array(shown, dtype=np.int64)),
        sorted_pts=sorted_pts,
        order=order.astype(np.int64, copy=False),
    )


class _SeekingCursor:
    """Yields the frames at increasing display indices, seeking only when that skips work.

    For display frame i with pts T (packet at decode position p), decoding starts at keyframe K: the last keyframe
    packet at or before p whose own pts is <= T. The pts condition matters for open GOPs, whose leading B-frames
    follow the recovery-point I-frame in decode order but precede it in display and reference the previous GOP.
    If K lies at or before the last packet already fed to the decoder, we keep decoding forward instead of seeking.
    After a seek the landing packet is checked (demuxers differ on pts vs dts seeking); if it landed after K we
    retry with earlier timestamps. The first decoded frame with pts == T is taken; frames before it are decoded
    (they are references) but never converted to RGB.
    """

    def __init__(self, container: Any, stream: Any, table: _PacketTable) -> None:
        self.container = container
        self.stream = stream
        self.table = table
        self.frames: Iterator[Any] | None = None
        self.fed = -1  # decode position of the last packet sent to the decoder

    def _start_position(self, target_pts: int) -> int:
        table = self.table
        p = table.position(target_pts)
        assert p is not None  # target_pts comes from the table
        k = int(np.searchsorted(table.keyframe_positions, p, side="right")) - 1
        while k >= 0 and table.pts[table.keyframe_positions[k]] > target_pts:
            k -= 1
        return int(table.keyframe_positions[k]) if k >= 0 else 0

    def _decode(self, packets: Iterator[Any]) -> Iterator[Any]:
        for packet in packets:
            if packet.pts is not None:
                position = self.table.position(packet.pts)
                if position is not None:
                    self.fed = max(self.fed, position)
            yield from packet.decode()

    def _seek(self, start: int) -> None:
        table = self.table
        # The keyframe's pts, then its dts (demuxers index by one or the other), then the very first timestamp.
        first_timestamp = min(table.timestamps(0))
        candidates = dict.fromkeys([*table.timestamps(start), first_timestamp])
        for timestamp in candidates:
            self.container.seek(timestamp, stream=self.stream, backward=True, any_frame=False)
            packets = self.container.demux(self.stream)
            first = next((packet for packet in packets if packet.pts is not None), None)
            landing = table.position(first.pts) if first is not None else None
            if landing is not None and landing <= start:
                self.fed = landing - 1
                self.frames = self._decode(itertools.chain([first], packets))
                return
            logger.debug("seek to %s landed at position %s, wanted <= %s; retrying", timestamp, landing, start)
        raise DecodeError("corrupt", f"cannot seek to the keyframe at decode position {start}")

    def close(self) -> None:
        """Break the cursor <-> generator reference cycle. Without this the container, its BytesIO and so the input
        bytes (hundreds of MB for a long video) stay alive after `sample` returns, until Python's cyclic garbage
        collector happens to run: two inputs in memory at once in a decode actor."""
        if self.frames is not None:
            self.frames.close()  # type: ignore[attr-defined]
            self.frames = None

    def frame_at(self, index: int) -> Any:
        target = int(self.table.display_pts[index])
        start = self._start_position(target)
        if self.frames is None or start > self.fed + 1:
            self._seek(start)
        assert self.frames is not None
        for frame in self.frames:
            if frame.pts is None:
                raise _NeedSequential("decoded frame without pts")
            if frame.pts < target:
                continue
            if frame.pts > target:
                # The decoder dropped frame `index` (damaged data): take the next shown frame rather than fail.
                logger.warning("frame %d (pts %d) not produced by the decoder; using pts %d", index, target, frame.pts)
            return frame
        raise DecodeError("corrupt", f"stream ended before frame {index} (pts {target})")


# Codecs of single pictures: a file holding one frame of these (a PNG or JPEG renamed .mp4) is a still, not a video.
STILL_CODECS = frozenset({"png", "apng", "mjpeg", "jpeg2000", "jpegls", "webp", "bmp", "tiff", "gif", "qoi", "ppm",
                          "pgm", "pbm", "pam", "targa", "dds", "exr", "hdr", "sgi", "xbm", "xpm"})


def is_still_image(container: Any, stream: Any) -> bool:
    """A picture format or an image demuxer (`image2`, `png_pipe`, ...): with one frame, a still."""
    fmt = container.format.name or ""
    return stream.codec.canonical_name in STILL_CODECS or fmt == "image2" or fmt.endswith("_pipe")


def _fingerprint(data: bytes) -> bytes:
    """Identifies the bytes of one video between calls (size + head + tail): cheap on a 2 GB file."""
    import hashlib

    return hashlib.sha1(len(data).to_bytes(8, "little") + data[:1 << 16] + data[-(1 << 16):]).digest()


class PyAVSampler:
    """Default backend: PyAV with exact keyframe seeks, one decoder thread by default.

    Frame index = rank of the frame's pts among the shown packets, found by a demux-only pass (cheap: packets are
    read, not decoded). On constant frame rate files this equals both the decode-order index and round(t * fps);
    on variable frame rate files it is still the decode-order index (what a full decode would count and what decord
    uses), *not* a time-based position: uniform sampling is then uniform in frames, not in seconds. Files whose
    packets lack timestamps fall back to decoding from the start and counting frames (exact, slower).
    """

    name = "pyav"

    def __init__(self, threads: int = 1, *, max_source_pixels: int | None = None, allow_stills: bool = False) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.max_source_pixels = max_source_pixels
        self.allow_stills = allow_stills
        # The packet table of the last video: a long video sampled one range of windows at a time (the embed job's
        # segment streaming) is scanned once, not once per range.
        self._table_key: bytes | None = None
        self._table: _PacketTable | None = None

    def sample(self, data: bytes, num_frames: int, max_pixels: int,
               segments: tuple[float, float] | None = None, windows: tuple[int, int] | None = None) -> DecodedVideo:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        shaper = FrameShaper(max_pixels)
        try:
            try:
                return self._sample_seeking(data, num_frames, shaper, segments, windows)
            except _NeedSequential as reason:
                # str(): a log handler that keeps records (pytest, memory handlers) must not keep the traceback,
                # whose frames hold the input bytes.
                logger.info("frame timestamps unusable (%s); decoding sequentially", str(reason))
                return self._sample_sequential(data, num_frames, FrameShaper(max_pixels), segments, windows)
        except DecodeError:
            raise
        except av.error.FFmpegError as error:
            raise DecodeError(_av_error_kind(error), f"{type(error).__name__}: {error}") from error
        except (EOFError, ValueError, IndexError, RuntimeError, OSError) as error:
            # PyAV surfaces some demux/decoder failures as plain Python errors; they are input problems here.
            raise DecodeError("corrupt", f"{type(error).__name__}: {error}") from error

    def _packets(self, data: bytes, container: Any, stream: Any) -> _PacketTable:
        key = _fingerprint(data)
        if key != self._table_key or self._table is None:
            self._table_key, self._table = None, None
            self._table = scan_packets(container, stream)
            self._table_key = key
        return self._table

    def _check_still(self, container: Any, stream: Any, total: int) -> None:
        if not self.allow_stills and total <= 1 and is_still_image(container, stream):
            raise DecodeError("not_a_video", f"a still image ({stream.codec.canonical_name} in "
                              f"{container.format.name}), not a video; input.stills=embed embeds stills as "
                              "one-frame videos")

    def _sample_seeking(self, data: bytes, num_frames: int, shaper: FrameShaper,
                        segments: tuple[float, float] | None, windows: tuple[int, int] | None) -> DecodedVideo:
        with _open_container(data) as container:
            stream = _video_stream(container, self.max_source_pixels)
            _check_index_within_data(stream, len(data))
            fps, duration = _stream_fps_duration(container, stream)
            table = self._packets(data, container, stream)
            total = len(table.display_pts)
            if total == 0:
                raise DecodeError("corrupt", "video stream has no frames")
            self._check_still(container, stream, total)
            plan = plan_frames(total, fps, num_frames, segments, windows)
            _configure_threads(stream, self.threads)
            cursor = _SeekingCursor(container, stream, table)
            try:
                frames_at = {}
                wanted = np.unique(np.concatenate(plan.groups)).tolist() if plan.groups else []
                for index in wanted:  # increasing: the cursor decodes forward
                    frame = cursor.frame_at(index)
                    frames_at[index] = shaper(frame.to_ndarray(format="rgb24"),
                                              rotation_to_quarter_turns(frame.rotation))
                return assemble_video(frames_at, plan, total, fps, duration)
            finally:
                cursor.close()

    def _sample_sequential(self, data: bytes, num_frames: int, shaper: FrameShaper,
                           segments: tuple[float, float] | None, windows: tuple[int, int] | None) -> DecodedVideo:
        # Pass 1 counts frames by decoding (no RGB conversion); pass 2 keeps the wanted ones. Only for files whose
        # packets carry no usable timestamps, where neither seeking nor a packet count can be trusted.
        with _open_container(data) as container:
            stream = _video_stream(container, self.max_source_pixels)
            _configure_threads(stream, self.threads)
            total = sum(1 for _ in container.decode(stream))
        if total == 0:
            raise DecodeError("corrupt", "video stream has no decodable frames")
        with _open_container(data) as container:
            stream = _video_stream(container, self.max_source_pixels)
            self._check_still(container, stream, total)
            fps, duration = _stream_fps_duration(container, stream)
            plan = plan_frames(total, fps, num_frames, segments, windows)
            wanted = set(np.concatenate(plan.groups).tolist()) if plan.groups else set()
            _configure_threads(stream, self.threads)
            frames_at = {}
            for position, frame in enumerate(container.decode(stream)):
                if position in wanted:
                    frames_at[position] = shaper(frame.to_ndarray(format="rgb24"),
                                                 rotation_to_quarter_turns(frame.rotation))
                    if len(frames_at) == len(wanted):
                        break
        if len(frames_at) != len(wanted):
            raise DecodeError("corrupt", f"second decode pass produced {len(frames_at)} of {len(wanted)} frames")
        return assemble_video(frames_at, plan, total, fps, duration)


@dataclass(frozen=True)
class VideoProbe:
    codec: str
    container: str
    quarter_turns: int
    fps: float
    duration: float


def probe_video(data: bytes, max_source_pixels: int | None, *, precheck: bool = True) -> VideoProbe:
    """PyAV look at the bytes before decord sees them: classify bad inputs and read the display rotation.

    decord 0.6 reports bad inputs with unspecific errors (or crashes), and PyAV 18 exposes the display matrix only
    on decoded frames (`VideoFrame.rotation`), so this decodes the first frame: one frame, a few ms even at 1080p.
    `precheck=False` skips the truncation check (tests only: it lets decord see the file that crashes it).
    """
    try:
        with _open_container(data) as container:
            stream = _video_stream(container, max_source_pixels)
            if precheck:
                _check_index_within_data(stream, len(data))
            fps, duration = _stream_fps_duration(container, stream)
            # canonical_name is the codec ("av1"), codec_context.name the decoder ("libdav1d").
            codec = stream.codec.canonical_name
            stream.codec_context.thread_count = 1
            first = next(iter(container.decode(stream)), None)
            if first is None:
                raise DecodeError("corrupt", "video stream has no decodable frames")
            return VideoProbe(codec, container.format.name, rotation_to_quarter_turns(first.rotation), fps, duration)
    except DecodeError:
        raise
    except av.error.FFmpegError as error:
        raise DecodeError(_av_error_kind(error), f"{type(error).__name__}: {error}") from error
    except (EOFError, ValueError, IndexError, RuntimeError, OSError) as error:
        raise DecodeError("corrupt", f"{type(error).__name__}: {error}") from error
