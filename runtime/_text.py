"""Text to model tensors, exactly as Keras ``TextVectorization`` does it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._errors import BadRequest

# Keras TextVectorization's default "lower_and_strip_punctuation" and "whitespace" split, as TensorFlow
# runs them: tf.strings.lower changes ASCII letters only ("É" stays), the regex strips ASCII punctuation
# only, and tf.strings.split breaks on ASCII whitespace only (not on NBSP, U+2003, \x1c-\x1f or \x85).
_PUNCTUATION = re.compile(r"[!\"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~']")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")


class TextPreprocessor:
    """Raw text to the model's input, mirroring Keras ``TextVectorization``.

    ``spec``: ``vocab`` (index = token id; Keras puts ``""`` at 0 and ``[UNK]`` at 1), ``max_len``,
    ``lowercase``, ``strip_punctuation``, ``output_mode`` ``int`` (padded ids) | ``multi_hot`` |
    ``count`` | ``tf_idf`` (with ``idf``), ``ngrams`` (N: every n-gram width 1..N, as Keras' integer
    ``ngrams``; or a list of widths, as Keras' tuple).

    A spec with a ``tokenizer`` key (``"wordpiece"``, ``"bpe"``) is a subword model (BERT/RoBERTa-style): see
    :class:`onnxfn.runtime._tokenizers.SubwordPreprocessor` for its keys.
    """

    def __init__(self, spec: dict[str, Any], *, dtype: Any = np.int64, max_chars: int = 100_000) -> None:
        self.dtype = dtype
        self.max_chars = max_chars
        self.subword = None
        if spec.get("tokenizer") is not None:
            from ._tokenizers import SubwordPreprocessor

            self.subword = SubwordPreprocessor(spec, dtype=dtype)
            self.vocab = self.subword.tokenizer.vocab
            self.mode, self.max_len = "int", self.subword.max_len
            return
        vocab = spec.get("vocab")
        if not isinstance(vocab, list) or not vocab:
            raise ValueError("text preprocess spec needs a non-empty 'vocab' list")
        self.vocab = [str(v) for v in vocab]
        self.index = {token: i for i, token in enumerate(self.vocab)}
        self.oov = self.index.get("[UNK]", 1 if len(self.vocab) > 1 else 0)
        self.mode = str(spec.get("output_mode", "int"))
        if self.mode not in ("int", "multi_hot", "count", "tf_idf"):
            raise ValueError(f"output_mode must be int, multi_hot, count or tf_idf, got {self.mode}")
        self.max_len = int(spec.get("max_len", 200))
        self.lowercase = bool(spec.get("lowercase", True))
        self.strip_punctuation = bool(spec.get("strip_punctuation", True))
        ngrams = spec.get("ngrams", 1) or 1
        widths = range(1, int(ngrams) + 1) if isinstance(ngrams, (int, float, str)) else ngrams
        self.ngram_widths = tuple(sorted({int(w) for w in widths if int(w) >= 1})) or (1,)
        self.ngrams = max(self.ngram_widths)
        idf = spec.get("idf")
        self.idf = np.asarray(idf, dtype=np.float32) if idf is not None else None
        if self.mode == "tf_idf" and (self.idf is None or len(self.idf) != len(self.vocab)):
            raise ValueError("tf_idf output_mode needs an 'idf' list as long as the vocab")

    def tokens(self, text: str) -> list[str]:
        """Standardised, split tokens, then n-grams in Keras' order (all 1-grams, then 2-grams, ...)."""
        if self.subword is not None:
            return self.subword.tokenizer.tokens(text)
        if self.lowercase:
            text = text.translate(_ASCII_LOWER)
        if self.strip_punctuation:
            text = _PUNCTUATION.sub("", text)
        words = [w for w in _ASCII_WHITESPACE.split(text) if w]
        if self.ngram_widths == (1,):
            return words
        out: list[str] = []
        for n in self.ngram_widths:
            out += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
        return out

    def ids(self, text: str) -> list[int]:
        if self.subword is not None:
            return self.subword.tokenizer.ids(text)
        return [self.index.get(token, self.oov) for token in self.tokens(text)]

    def array(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise BadRequest(f"text instances must be strings, got {type(text).__name__}")
        if len(text) > self.max_chars:
            raise BadRequest(f"text is {len(text):,} characters, above the limit of {self.max_chars:,}")
        if self.subword is not None:
            return self.subword.row(text)
        ids = self.ids(text)
        if self.mode == "int":
            out = np.zeros(self.max_len, dtype=self.dtype)
            ids = ids[: self.max_len]
            out[: len(ids)] = ids
            return out
        vec = np.zeros(len(self.vocab), dtype=np.float32)
        if self.mode == "multi_hot":
            vec[ids] = 1.0
        else:
            np.add.at(vec, ids, 1.0)
            if self.mode == "tf_idf" and self.idf is not None:
                vec *= self.idf
        if len(self.vocab) > 0 and self.index.get("") == 0:
            vec[0] = 0.0  # the padding token never counts
        return vec.astype(self.dtype, copy=False)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.array(t) for t in texts])
