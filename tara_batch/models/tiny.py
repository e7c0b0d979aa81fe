"""Build a tiny, random-initialised Qwen2-VL checkpoint offline: the test and quickstart stand-in for TARA.

Same architecture class, same file layout (config.json, model.safetensors, tokenizer, processor configs, chat
template) and same loading path as a real Qwen2-VL-layout TARA checkpoint, so every code path that touches the real
model is exercised; only the sizes are shrunk (a few MB). Nothing is downloaded: the byte-level BPE tokenizer is
trained in-process on a built-in corpus.

    python -m tara_batch.models.tiny ./tiny-tara        # or: tara-batch make-tiny-model ./tiny-tara
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Qwen2-VL's special tokens, in Qwen's order; the ids in our tiny vocab are whatever the trainer assigns them
# (recorded in config.json, exactly like the real checkpoint records 151652...).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The ChatML template Qwen2-VL ships (Jinja, for transformers' apply_chat_template); tara-batch itself renders
# prompts with the profile's template, which produces the same string for one user turn (a test pins it).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = """
Summary above sentence in one word: Summary above video in one word: Summary above image in one word:
USER: Source video: Edit instruction: Look at the attached video carefully. The provided text is instruction to
edit the video. Imagine this edit instruction being applied to the provided video frame.
Summarize the resulting edited video in one word: ASSISTANT: user assistant system
someone is folding a paper. someone is unfolding a paper. cutting a paper. a person opens the door and walks in.
a person closes the door and walks out. a man picks up a cup from the table, then puts it down again.
a woman pushes the cart to the left. a child pulls the rope to the right. the dog runs into the room.
a red circle moves from left to right. a blue square moves up and down. the screen turns green.
nobody is in the kitchen. there is no car on the road. he never opens the window. she did not close the box.
The quick brown fox jumps over the lazy dog. 0123456789 , . ! ? ' " ( ) - : ; / a b c d e f g h i j k l m n o p
q r s t u v w x y z A B C D E F G H I J K L M N O P Q R S T U V W X Y Z
"""

# Sizes from stack-notes.md ("A tiny Qwen2-VL, offline"); head_dim 64 works in vLLM's CPU attention and
# mrope_section [8, 12, 12] sums to head_dim / 2 as M-RoPE requires.
TEXT_CONFIG = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 10000.0},
)
VISION_CONFIG = dict(
    depth=2,
    embed_dim=128,
    hidden_size=128,  # output width of the projector = the LLM's hidden size
    mlp_ratio=2,
    num_heads=2,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
)


def build_tokenizer(vocab_size: int = 384, corpus: str = ""):
    """A byte-level BPE trained in-process (on the built-in corpus plus `corpus`), wrapped as a left-padding
    PreTrainedTokenizerFast. A model's own words in `corpus` (the toy world's captions) become single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4 + [corpus] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",  # pooling reads position -1: it must be a real token in every row
        model_max_length=32768,
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(tokenizer, text: dict | None = None, vision: dict | None = None):
    """The tiny Qwen2VLConfig for `tokenizer`: special-token ids exactly as the tokenizer assigned them; `text` /
    `vision` override fields of TEXT_CONFIG / VISION_CONFIG (sizes)."""
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2VLConfig(
        text_config=dict(
            TEXT_CONFIG,
            **(text or {}),
            vocab_size=len(tokenizer),
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(VISION_CONFIG, **(vision or {})),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_model(out_dir: str | Path, seed: int = 0, *, min_pixels: int = 3136, max_pixels: int = 460_800,
                     text: dict | None = None, vision: dict | None = None, corpus: str = "",
                     vocab_size: int = 384) -> Path:
    """Write a complete tiny Qwen2-VL checkpoint to `out_dir` and return it. Deterministic for a given seed.

    `text` / `vision` override the sizes (the toy world's model is larger), `corpus` adds text the tokenizer trains
    on."""
    import torch
    from transformers import (
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(vocab_size, corpus)
    vocab = len(tokenizer)
    config = tiny_config(tokenizer, text, vision)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).to(torch.float32).eval()
    model.save_pretrained(out, safe_serialization=True)

    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size, cap_pixels_per_frame=False),
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    (out / "tara_batch_tiny.json").write_text(json.dumps({"builder": "tara_batch.models.tiny", "seed": seed}) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    log.info("tiny Qwen2-VL written to %s (%.2f M parameters, vocab %d)", out, n_params / 1e6, vocab)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build_tiny_model(args.out_dir, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
