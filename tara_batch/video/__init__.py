"""Video: encoded bytes -> the uniformly sampled RGB frames TARA embeds, and making real test videos.

May import: `errors`, `schema`. Knows nothing of Ray, storage or models: bytes in, frames (numpy) out.

    frames.py          the shared rules: uniform indices, segment windows, resize, rotation; DecodedVideo, DecodeError
    pyav_sampler.py    default backend (exact keyframe seeks, bounded memory)
    decord_sampler.py  alternative backend (decord on what it decodes exactly, PyAV for the rest)
    isolation.py       any backend in a child process, so a decoder crash fails one video, not the caller
    registry.py        get_sampler(name, isolate=...): the only module that knows all of the above
    heap.py            returning freed C heap to the OS in long-lived decoders
    encode.py          encoding frames with the ffmpeg shipped by imageio-ffmpeg
    samples.py         the sample archive, bad inputs and unusual-but-good files used by tests and the demo
"""
