"""Tokenizer loading, and the appended end token that last-token pooling reads.

:func:`append_end_token` installs a post-processor that appends ``<|endoftext|>`` to every
sequence. Because it lives in the tokenizer (and so in the saved ``tokenizer.json``),
sentence-transformers reproduces it when it loads a folder saved by embedforge. The
shared Qwen3 tokenizer folder has no ``tokenizer.json``; transformers 5 assembles the fast
tokenizer from ``vocab.json`` and ``merges.txt`` itself ("Hello world" -> [9707, 1879]).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer saved in a model or tokenizer folder (never from a hub)."""
    return AutoTokenizer.from_pretrained(Path(folder))


def appends_token(tokenizer: PreTrainedTokenizerBase, token: str) -> bool:
    """Whether encoding a text already ends with ``token``."""
    return tokenizer("probe")["input_ids"][-1] == tokenizer.convert_tokens_to_ids(token)


def append_end_token(tokenizer: PreTrainedTokenizerBase, token: str) -> PreTrainedTokenizerBase:
    """Make the tokenizer append ``token`` to every sequence (idempotent).

    Truncation in the ``tokenizers`` backend reserves room for post-processor tokens, so the
    end token survives truncation and last-token pooling always reads it.
    """
    if appends_token(tokenizer, token):
        return tokenizer
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TypeError(f"last-token pooling needs a fast tokenizer, got {type(tokenizer).__name__}")
    token_id = tokenizer.convert_tokens_to_ids(token)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {token}:0", pair=f"$A:0 {token}:0 $B:1 {token}:1", special_tokens=[(token, token_id)]
    )
    if not appends_token(tokenizer, token):
        raise RuntimeError(f"could not make the tokenizer append {token!r}")
    return tokenizer
