"""Models: what turns a checkpoint into TARA embeddings. No Ray imports here.

May import: `errors`, `schema`, `io/` (checkpoints live on S3 too). Knows nothing of decoding, tables or jobs: an
embedder takes frames (numpy) and texts and returns unit vectors.

    profile.py       prompts, chat template, frames, pixels: the `tara` profile (part of the model version)
    preprocess.py    the Qwen2-VL processor per video + exact collate; token-budget batch planning
    backend.py       TransformersEmbedder: last-token, final-norm, L2-normalised; original M-RoPE positions
    vllm_backend.py  VLLMEmbedder: the same vectors through vLLM's pooling engine
    loader.py        EmbedderSpec (what a Ray actor receives), checkpoint fingerprint and dimension
    checkpoint.py    local or s3:// checkpoints, cached once per node; content hash -> model id
    convert.py       Tarsier2 (llava) -> Qwen2-VL layout; convert_config.py, verify.py beside it
    cost.py          visual tokens and FLOPs per video (sizing)
    tiny.py          a tiny random Qwen2-VL built offline (tests, demo); tiny_tarsier.py in the Tarsier2 layout
"""
