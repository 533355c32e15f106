"""A tiny, real transformers model and tokenizer built in-process (no downloads), for unit tests.

Gemma 3 architecture with a sliding window shorter than the test prompts, so the scorer's masks are
exercised for both layer types; a byte-level BPE tokenizer, so any unicode label tokenizes.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

CORPUS = [
    "Classify the customer's request. Options: credit card, debit card, card, loan, cancel card",
    "customer: I want to cancel my credit card please",
    "agent: sure, I can help with that. Intent: Does apply? Answer: yes no",
    "Text: can I borrow money for a house? Label: loan",
] * 20


@lru_cache(maxsize=1)
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<eos>", "<bos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    return fast


def tiny_model(seed: int = 0, sliding_window: int = 8) -> tuple[Gemma3ForCausalLM, PreTrainedTokenizerFast]:
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = Gemma3ForCausalLM(config).eval()
    return model, tokenizer
