"""The generator: a T5 encoder-decoder built from a config (never downloaded)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration


@dataclass(frozen=True)
class ModelPreset:
    d_model: int
    d_ff: int
    d_kv: int
    num_heads: int
    num_layers: int
    num_decoder_layers: int
    dropout_rate: float = 0.1
    relative_attention_num_buckets: int = 32
    feed_forward_proj: str = "relu"


PRESETS: dict[str, ModelPreset] = {
    # MQL4GRec's generator.
    "paper": ModelPreset(d_model=128, d_ff=1024, d_kv=64, num_heads=6, num_layers=4, num_decoder_layers=4),
    # For tests and the quickstart: trains in seconds on a CPU.
    "tiny": ModelPreset(d_model=32, d_ff=64, d_kv=8, num_heads=2, num_layers=1, num_decoder_layers=1),
    "small": ModelPreset(d_model=64, d_ff=256, d_kv=32, num_heads=4, num_layers=2, num_decoder_layers=2),
}


def build_model(preset: str | ModelPreset, tokenizer: PreTrainedTokenizerBase, **overrides) -> T5ForConditionalGeneration:
    """A freshly initialised T5 sized by ``preset`` for ``tokenizer``'s vocabulary."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown model preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    config = T5Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **{**asdict(preset), **overrides},
    )
    return T5ForConditionalGeneration(config)
