"""Which training path a base model takes, read from its ``config.json`` (no torch).

    encoder  BERT-like (``BertModel``, ``*ForMaskedLM``, ...): full fine-tune of every weight
    decoder  causal LM (``*ForCausalLM``; Qwen2, Llama, Mistral, ...): LoRA adapters on the attention and
             MLP projections plus a trainable ``score`` head, merged into plain weights after training
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pipeline import codec
from pipeline.errors import ConfigError, DecodeError

Family = Literal["encoder", "decoder"]

DECODER_TYPES: Final = frozenset({
    "qwen2", "qwen3", "llama", "mistral", "mixtral", "gemma", "gemma2", "gemma3_text", "phi", "phi3", "gpt2",
    "gpt_neox", "falcon", "olmo", "olmo2", "smollm3", "granite", "starcoder2",
})
"""``model_type`` values taken as decoders even when ``architectures`` names no ``*ForCausalLM``."""

DEFAULT_LORA_TARGETS: Final = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The attention and MLP projections of Llama-style decoders (Qwen2/3, Llama, Mistral, Gemma)."""

HEAD_MODULES: Final = ("score",)
"""The sequence-classification head of ``*ForSequenceClassification`` decoders: trained in full (peft
``modules_to_save``), not through an adapter."""


def model_family(base_model: Path) -> Family:
    """``decoder`` when ``config.json`` names a ``*ForCausalLM`` architecture or a known decoder
    ``model_type``; ``encoder`` otherwise (the full fine-tune path)."""
    file = base_model / "config.json"
    try:
        config = codec.loads(file.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"TrainConfig.base_model: {base_model} has no config.json: point it at a Hugging Face "
                          "model folder") from None
    except DecodeError as exc:
        raise ConfigError(f"{file}: {exc}: re-download the base model") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{file}: expected a JSON object: re-download the base model")
    architectures = config.get("architectures") or []
    if any(isinstance(a, str) and a.endswith("ForCausalLM") for a in architectures):
        return "decoder"
    return "decoder" if config.get("model_type") in DECODER_TYPES else "encoder"
