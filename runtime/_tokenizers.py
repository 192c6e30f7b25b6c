"""Subword tokenizers in pure Python: the same ids as the training side, without TensorFlow.

:class:`WordPieceTokenizer` reproduces keras-hub's ``WordPieceTokenizer`` (which runs tensorflow-text's
``FastWordpieceTokenizer`` behind BERT's pre-tokenization); byte-level BPE (GPT-2/RoBERTa) is in ``_bpe.py``.
:class:`SubwordPreprocessor` packs the ids like keras-hub's text classifier preprocessors (BERT, RoBERTa):
``cls tokens sep`` then ``pad`` up to ``max_len``. The spec keys (``onnxfn.preprocess``) are documented in
docs/design.md.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ._bpe import BytePairTokenizer

# RE2's \s (what tensorflow-text's regex_split uses): ASCII only, no \v (which is a control character anyway).
_SPACES = frozenset(" \t\n\r\f")
# BERT's punctuation: every non-letter/number ASCII symbol, plus Unicode's P* categories.
_ASCII_PUNCT = frozenset(chr(c) for c in (*range(33, 48), *range(58, 65), *range(91, 97), *range(123, 127)))
_CJK = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
# Unicode Default_Ignorable_Code_Point, which NFKC_Casefold (tensorflow-text's case_fold_utf8) drops.
_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_DROP, _KEEP, _WORD = 0, 1, 2

TOKENIZERS = ("wordpiece", "bpe")


def _in(ranges: tuple[tuple[int, int], ...], code: int) -> bool:
    return any(lo <= code <= hi for lo, hi in ranges)


def _kind(char: str, split_on_cjk: bool) -> int:
    """Whether ``char`` ends a word and is dropped (space/control), ends it and is kept (punctuation, CJK),
    or belongs to the word."""
    if char in _SPACES:
        return _DROP
    if char in _ASCII_PUNCT:
        return _KEEP
    if char.isascii():
        return _DROP if ord(char) < 32 or ord(char) == 127 else _WORD
    category = unicodedata.category(char)
    if category in ("Cc", "Cf"):
        return _DROP
    if category[0] == "P" or (split_on_cjk and _in(_CJK, ord(char))):
        return _KEEP
    return _WORD


def case_fold(text: str) -> str:
    """tensorflow-text's ``case_fold_utf8``: NFKC_Casefold (NFKC, full case folding, NFKC), ignorables dropped."""
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    if not text.isascii():
        text = "".join(c for c in text if not _in(_IGNORABLE, ord(c)))
    return text


class WordPieceTokenizer:
    """BERT's WordPiece: pre-tokenize (accents, split on spaces/punctuation/CJK, case fold), then split each
    word greedily into the longest vocabulary pieces (``##`` marks a continuation). A word with no exact
    split, or longer than ``max_bytes_per_word`` UTF-8 bytes, becomes the unknown token."""

    def __init__(
        self,
        vocab: Sequence[str],
        *,
        lowercase: bool = False,
        strip_accents: bool = False,
        split: bool = True,
        split_on_cjk: bool = True,
        suffix_indicator: str = "##",
        unk: str = "[UNK]",
        max_bytes_per_word: int = 100,
    ) -> None:
        self.vocab = [str(v) for v in vocab]
        self.index = {token: i for i, token in enumerate(self.vocab)}
        if unk not in self.index:
            raise ValueError(f"the vocabulary has no unknown token {unk!r}")
        self.unk, self.unk_id = unk, self.index[unk]
        self.lowercase, self.strip_accents = bool(lowercase), bool(strip_accents)
        self.split, self.split_on_cjk = bool(split), bool(split_on_cjk)
        self.suffix = str(suffix_indicator)
        self.max_bytes = int(max_bytes_per_word)
        # No piece is longer than the longest vocabulary entry: bounds the greedy search.
        self._longest = max((len(t) for t in self.vocab), default=1)

    def words(self, text: str) -> list[str]:
        """Pre-tokenized words, in keras-hub's order: strip accents, split, case fold."""
        return list(self._words(text))

    def _words(self, text: str) -> Iterator[str]:
        if self.strip_accents:
            text = unicodedata.normalize("NFD", text)
            text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        fold = case_fold if self.lowercase else None
        if not self.split:
            if text:
                yield fold(text) if fold else text
            return
        current: list[str] = []
        for char in text:
            kind = _kind(char, self.split_on_cjk)
            if kind == _WORD:
                current.append(char)
                continue
            if current:
                word = "".join(current)
                yield fold(word) if fold else word
                current = []
            if kind == _KEEP:
                yield fold(char) if fold else char
        if current:
            word = "".join(current)
            yield fold(word) if fold else word

    def pieces(self, word: str) -> list[str]:
        """One word as vocabulary pieces (greedy longest match first), or ``[unk]``."""
        if not word:
            return []
        if len(word.encode("utf-8")) > self.max_bytes:
            return [self.unk]
        out: list[str] = []
        start, n = 0, len(word)
        while start < n:
            end = min(n, start + self._longest)
            piece = None
            while end > start:
                candidate = word[start:end] if start == 0 else self.suffix + word[start:end]
                if candidate in self.index:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                return [self.unk]
            out.append(piece)
            start = end
        return out

    def tokens(self, text: str) -> list[str]:
        return [piece for word in self.words(text) for piece in self.pieces(word)]

    def ids(self, text: str, limit: int | None = None) -> list[int]:
        """Token ids; with ``limit``, the first ``limit`` only (the rest of the text is not tokenized)."""
        out: list[int] = []
        for word in self._words(text):
            out += [self.index[piece] for piece in self.pieces(word)]
            if limit is not None and len(out) >= limit:
                return out[:limit]
        return out


class SubwordPreprocessor:
    """Raw text to the model's ``token_ids`` row: tokenize, truncate, add ``cls``/``sep``, pad to ``max_len``.

    ``spec`` (``onnxfn.preprocess``): ``tokenizer`` (``"wordpiece"`` | ``"bpe"``), ``vocab``, ``max_len``,
    ``cls``, ``sep``, ``pad`` (null to leave a marker out); WordPiece: ``lowercase``, ``strip_accents``,
    ``split``, ``split_on_cjk``, ``suffix_indicator``, ``unk``, ``max_bytes_per_word``; BPE: ``merges``,
    ``special``, ``add_prefix_space``.
    """

    def __init__(self, spec: dict[str, Any], *, dtype: Any = np.int64) -> None:
        kind = spec.get("tokenizer")
        if kind not in TOKENIZERS:
            raise ValueError(f"tokenizer {kind!r} is not supported: onnxfn runs {', '.join(TOKENIZERS)}")
        vocab = spec.get("vocab")
        self.tokenizer: WordPieceTokenizer | BytePairTokenizer
        if kind == "bpe":
            if not isinstance(vocab, (list, dict)) or not vocab:
                raise ValueError("a bpe tokenizer spec needs a non-empty 'vocab' (list, or {token: id})")
            merges, unsplittable = spec.get("merges"), spec.get("special") or []
            if not isinstance(merges, list):
                raise ValueError("a bpe tokenizer spec needs a 'merges' list of 'a b' rules")
            if not isinstance(unsplittable, list) or not all(isinstance(t, str) and t for t in unsplittable):
                raise ValueError("a bpe tokenizer spec's 'special' must be a list of non-empty tokens")
            self.tokenizer = BytePairTokenizer(
                vocab,
                merges,
                special=unsplittable,
                add_prefix_space=spec.get("add_prefix_space", False),
            )
            markers = ("<s>", "</s>", "<pad>")
        else:
            if not isinstance(vocab, list) or not vocab:
                raise ValueError("a tokenizer spec needs a non-empty 'vocab' list")
            self.tokenizer = WordPieceTokenizer(
                vocab,
                lowercase=spec.get("lowercase", False),
                strip_accents=spec.get("strip_accents", False),
                split=spec.get("split", True),
                split_on_cjk=spec.get("split_on_cjk", True),
                suffix_indicator=spec.get("suffix_indicator", "##"),
                unk=spec.get("unk", "[UNK]"),
                max_bytes_per_word=spec.get("max_bytes_per_word", 100),
            )
            markers = ("[CLS]", "[SEP]", "[PAD]")
        self.max_len = int(spec.get("max_len", 128))
        index = self.tokenizer.index

        def special(key: str, default: str | None) -> int | None:
            token = spec.get(key, default)
            if token is None:
                return None
            if token not in index:
                raise ValueError(f"the {key} token {token!r} is not in the vocabulary")
            return index[token]

        self.cls_id = special("cls", markers[0])
        self.sep_id = special("sep", markers[1])
        self.pad_id = special("pad", markers[2]) or 0
        room = self.max_len - (self.cls_id is not None) - (self.sep_id is not None)
        if room < 1:
            raise ValueError(f"max_len {self.max_len} leaves no room for tokens")
        self.room = room
        self.dtype = dtype

    def row(self, text: str) -> np.ndarray:
        ids = self.tokenizer.ids(text, limit=self.room)
        if self.cls_id is not None:
            ids.insert(0, self.cls_id)
        if self.sep_id is not None:
            ids.append(self.sep_id)
        out = np.full(self.max_len, self.pad_id, dtype=self.dtype)
        out[: len(ids)] = ids
        return out
