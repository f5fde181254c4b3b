"""Long prompts: splitting a prompt that overflows CLIP's text context into sentence chunks.

CLIP reads at most ``context_length`` tokens including its start and end-of-text tokens (77 for OpenAI and
most OpenCLIP models, so 75 BPE tokens of text, about 58 English words). The standard score truncates the
prompt, keeping the end-of-text token the text embedding is pooled at; a prompt that overflows is scored a
second way, over chunks that each fit (the segment-level encoding of LongAlign,
arXiv:2410.11817):

1. split into sentences at ``.``, ``!``, ``?`` (followed by white space) and at line breaks;
2. a sentence that does not fit is split at ``,`` ``;`` ``:``, and adjacent clauses are packed greedily
   while they fit;
3. a clause that still does not fit is split between words, packed the same way. A single word longer than
   the budget stays one chunk (the tokenizer truncates it, keeping end-of-text).

The chunks are the prompt's words in their order: nothing is dropped or repeated.
"""

from __future__ import annotations

import re
from collections.abc import Callable

TokenCounter = Callable[[str], int]
"""Number of text tokens of a string, without the start and end-of-text tokens."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*[\r\n]+\s*")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def _pack(pieces: list[str], count: TokenCounter, budget: int) -> list[str]:
    """Join adjacent pieces with a space while the joined text fits ``budget`` tokens."""
    out: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if current and count(candidate) > budget:
            out.append(current)
            current = piece
        else:
            current = candidate
    if current:
        out.append(current)
    return out


def _split_long(text: str, count: TokenCounter, budget: int) -> list[str]:
    chunks: list[str] = []
    for clause in _pack([c for c in _CLAUSE_END.split(text) if c.strip()], count, budget):
        if count(clause) <= budget:
            chunks.append(clause)
        else:
            chunks.extend(_pack(clause.split(), count, budget))
    return chunks


def sentence_chunks(prompt: str, count: TokenCounter, budget: int) -> list[str]:
    """The prompt split into chunks of at most ``budget`` text tokens each (see the module docstring)."""
    if budget < 1:
        raise ValueError(f"token budget must be positive, got {budget}")
    chunks: list[str] = []
    for sentence in _SENTENCE_END.split(prompt.strip()):
        sentence = " ".join(sentence.split())
        if not sentence:
            continue
        if count(sentence) <= budget:
            chunks.append(sentence)
        else:
            chunks.extend(_split_long(sentence, count, budget))
    return chunks
