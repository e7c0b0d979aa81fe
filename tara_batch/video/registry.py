"""Frame samplers by name: the one place that knows every backend and the isolated wrapper around them.

    from tara_batch.video.registry import get_sampler
    video = get_sampler("pyav").sample(open("clip.mp4", "rb").read(), num_frames=8, max_pixels=460_800)

It sits above the samplers and `video.isolation` (which builds its inner sampler from the sampler classes), so no
module of `video/` imports another in a circle.
"""

from __future__ import annotations

from tara_batch.video.decord_sampler import DecordSampler
from tara_batch.video.frames import SAMPLERS, FrameSampler
from tara_batch.video.isolation import IsolatedSampler
from tara_batch.video.pyav_sampler import PyAVSampler


def get_sampler(
    name: str,
    threads: int = 1,
    *,
    max_source_pixels: int | None = None,
    isolate: bool = False,
    timeout_s: float = 120.0,
    allow_stills: bool = False,
) -> FrameSampler:
    """Backend by name: 'pyav' (default, exact, robust) or 'decord'.

    `isolate=True` runs the backend in a long-lived child process (`tara_batch.video.isolation.IsolatedSampler`): a
    decoder crash or a video taking longer than `timeout_s` then fails that one video with
    DecodeError('decoder_crash') instead of killing the caller. `timeout_s` is ignored without `isolate`.
    `allow_stills`: a still image (a PNG or JPEG, whatever its file name) is sampled as a one-frame video instead of
    failing as `not_a_video`.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown frame sampler {name!r}; valid choices: {', '.join(SAMPLERS)}")
    if isolate:
        return IsolatedSampler(name, threads, timeout_s=timeout_s, max_source_pixels=max_source_pixels,
                               inner_options={"allow_stills": True} if allow_stills else None)
    if name == "pyav":
        return PyAVSampler(threads, max_source_pixels=max_source_pixels, allow_stills=allow_stills)
    return DecordSampler(threads, max_source_pixels=max_source_pixels, allow_stills=allow_stills)
