"""Test- and demo-size base models: a byte-level BPE tokenizer trained on your texts and a random-weight
Qwen2 decoder built from it. Both save plain Hugging Face folders that ``TrainConfig.base_model`` accepts.

    tokenizer_dir = train_tokenizer(texts, 2000, tmp / "tokenizer")
    base = build_tiny_decoder(tmp / "base", tokenizer_dir)      # then train(TrainConfig(base_model=base), ...)

The decoder's attention head size is fixed at 64: vLLM's CPU attention backend rejects smaller heads, so
``hidden_size`` is ``num_heads * 64``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

HEAD_DIM = 64
PAD, EOS, BOS, UNK = "<pad>", "<|endoftext|>", "<|startoftext|>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, BOS, UNK)  # ids 0..3 in this order


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> Path:
    """Train a byte-level BPE on ``texts`` and save it as a ``PreTrainedTokenizerFast`` with pad/eos/bos/unk
    tokens (no special tokens are added around a text; truncation keeps the head). Returns ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size <= len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size {vocab_size} must exceed {len(SPECIAL_TOKENS) + 256} (specials + 256 bytes)")
    bpe = Tokenizer(models.BPE(unk_token=UNK))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token=PAD, eos_token=EOS, bos_token=BOS,
                                        unk_token=UNK, padding_side="right", truncation_side="right")
    out = Path(out_dir)
    tokenizer.save_pretrained(str(out))
    return out


def build_tiny_decoder(out_dir: str | Path, tokenizer_dir: str | Path, *, hidden_size: int = 128, num_heads: int = 2,
                       num_kv_heads: int | None = None, num_layers: int = 2, intermediate_size: int = 256,
                       max_position_embeddings: int = 512, seed: int = 0) -> Path:
    """Save a random-weight ``Qwen2ForCausalLM`` (float32) plus the tokenizer from ``tokenizer_dir`` to
    ``out_dir``: a base model folder for the decoder + LoRA training path. Returns ``out_dir``."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    if hidden_size != num_heads * HEAD_DIM:
        raise ValueError(f"hidden_size {hidden_size} must be num_heads * {HEAD_DIM} = {num_heads * HEAD_DIM} "
                         "(vLLM's CPU attention needs head size 64)")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        head_dim=HEAD_DIM,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).to(torch.float32)
    out = Path(out_dir)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
