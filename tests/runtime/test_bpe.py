"""The runtime's pure-Python byte-level BPE (no TensorFlow): GPT-2's byte map, keras-hub's pre-tokenization
rules one by one, the merge loop and RoBERTa's packing, on a hand-made vocabulary. Parity with keras-hub on
a corpus is in tests/converter/test_bpe_tokenizer.py."""

from __future__ import annotations

import random

import numpy as np
import pytest
from bpe_data import TRAIN, train_bpe
from onnxfn.runtime import _bpe
from onnxfn.runtime._bpe import BytePairTokenizer, bytes_to_unicode, pre_tokenize
from onnxfn.runtime._text import TextPreprocessor

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
BYTES = list(bytes_to_unicode().values())
MERGES = ["Ġ t", "h e", "Ġt he", "i n", "in g", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ã ©", "c a", "ca f"]
MERGES += ["caf Ã©"]
VOCAB = SPECIAL + BYTES + [rule.replace(" ", "") for rule in MERGES]


def test_gpt2_byte_map():
    chars = bytes_to_unicode()
    assert len(chars) == 256 and len(set(chars.values())) == 256
    assert chars[ord("a")] == "a" and chars[ord("!")] == "!"
    assert chars[ord(" ")] == "Ġ" and chars[ord("\n")] == "Ċ" and chars[0] == "Ā"
    assert all(c.isprintable() and not c.isspace() for c in chars.values())


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hello world", ["Hello", " world"]),  # a space belongs to the next word
        ("a  b", ["a", " ", " b"]),  # of a run of spaces, the last one goes with the word
        ("end  ", ["end", " ", " "]),
        ("don't I'll WE'RE", ["don", "'t", " I", "'ll", " WE", "'", "RE"]),  # contractions are lowercase
        ("12345 3.14", ["12345", " 3", ".", "14"]),  # digits stay together
        ("x\n\ny", ["x", "\n\n", "y"]),
        ("tab\tx", ["tab", "\t", "x"]),
        ("a\u00a0b", ["a", "\u00a0", "b"]),  # NBSP is one of keras-hub's extra spaces
        ("café 東京😀", ["café", " 東京", "😀"]),  # letters by Unicode category; emoji are "other"
        ("x\u200by", ["x", "\u200b", "y"]),  # zero-width space: a format character, not a space
        ("१२६ ६", ["१२६", " "]),  # keras-hub's marker "६" typed in the text vanishes, as in keras-hub
        ("", []),
    ],
)
def test_pre_tokenization_follows_keras_hub(text, words):
    assert list(pre_tokenize(text)) == words


def test_special_tokens_are_never_split():
    special = ["<s>", "</s>", "<pad>"]
    assert list(pre_tokenize("<s>hi</s> <pad>", special)) == ["<s>", "hi", "</s>", " ", "<pad>"]
    assert list(pre_tokenize("<s>hi", [])) == ["<", "s", ">", "hi"]
    # keras-hub's stand-in for the first special token, typed in the text, becomes that token.
    assert list(pre_tokenize("ĴA", special)) == ["<s>"]
    tok = BytePairTokenizer(VOCAB, MERGES, special=special)
    assert tok.tokens("<s>the</s>") == ["<s>", "t", "he", "</s>"]
    assert tok.ids("<s>") == [VOCAB.index("<s>")]


def test_merges_apply_by_rank_within_words():
    tok = BytePairTokenizer(VOCAB, MERGES)
    assert tok.tokens("the world") == ["t", "he", "Ġworld"]  # "Ġ t" needs the space: not at the start
    assert tok.tokens(" the") == ["Ġthe"]
    assert tok.pieces("café") == ["cafÃ©"]  # é is two bytes (Ã ©): merged, then joined to "caf"
    assert tok.pieces("cafe") == ["caf", "e"]
    assert tok.tokens("sing ing") == ["s", "ing", "Ġ", "ing"]  # merges never cross words
    assert tok.ids("the") == [VOCAB.index("t"), VOCAB.index("he")]
    # Every text has ids: unknown words fall back to bytes (all 256 are in the vocabulary).
    assert len(tok.ids("東京")) == 6


def test_prefix_space_and_unknown_pieces():
    tok = BytePairTokenizer(VOCAB, MERGES, add_prefix_space=True)
    assert tok.tokens("the") == ["Ġthe"]
    small = BytePairTokenizer(["a", "b", "ab"], ["a b"])  # no byte for "c": keras-hub's lookup gives -1
    assert small.ids("abc") == [2, -1]
    mapping = BytePairTokenizer({"a": 5, "b": 7, "ab": 9}, ["a b"])  # ids need not be 0..n-1
    assert mapping.ids("ab b") == [9, -1, 7] and mapping.vocab[9] == "ab"  # "Ġ" is not in it


def test_roberta_packing_and_truncation():
    spec = {"tokenizer": "bpe", "vocab": VOCAB, "merges": MERGES, "special": SPECIAL, "max_len": 8}
    spec.update(cls="<s>", sep="</s>", pad="<pad>")
    pre = TextPreprocessor(spec, dtype=np.int32)
    row = pre(["the world"])[0]
    s, e, p = VOCAB.index("<s>"), VOCAB.index("</s>"), VOCAB.index("<pad>")
    assert row.dtype == np.int32
    assert row.tolist() == [s, VOCAB.index("t"), VOCAB.index("he"), VOCAB.index("Ġworld"), e, p, p, p]
    long = pre(["the world" * 50])[0]
    assert long[0] == s and long[-1] == e and p not in long.tolist()  # first 6 tokens, then </s>
    assert pre([""])[0].tolist() == [s, e] + [p] * 6
    assert pre.tokens(" the") == ["Ġthe"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"merges": None}, "needs a 'merges' list"),
        ({"merges": ["Ġ zz"]}, "not two vocabulary tokens"),
        ({"merges": ["a b c"]}, "not two vocabulary tokens"),
        ({"special": ["<cls>"]}, "special token '<cls>' is not in the vocabulary"),
        ({"special": "<s>"}, "'special' must be a list"),
        ({"vocab": []}, "non-empty 'vocab'"),
        ({"cls": "[CLS]"}, "cls token '\\[CLS\\]' is not in the vocabulary"),
    ],
)
def test_bad_specs_are_refused_at_load(change, message):
    spec = {"tokenizer": "bpe", "vocab": VOCAB, "merges": MERGES, "max_len": 8, **change}
    with pytest.raises(ValueError, match=message):
        TextPreprocessor(spec)


def test_lone_surrogates_nul_and_long_texts():
    tok = BytePairTokenizer(VOCAB, MERGES)
    assert len(tok.ids("a\ud800b")) == 5  # from JSON "\ud800": three bytes, never an exception
    assert tok.ids("the\x00world") == tok.ids("the")  # keras-hub's TensorFlow ops stop at a NUL
    # ... after the markers are placed: the space before the NUL got one, so " \u2009 " stays a word.
    assert list(pre_tokenize("x \u2009  \x00B")) == ["x", " \u2009 ", " "]
    # Long runs of spaces: linear, like RE2 (no rescan of the run from every space).
    assert list(pre_tokenize("a" + " " * 50_000 + "b")) == ["a", " " * 49_999, " b"]
    assert list(pre_tokenize("a" + "\t" + " " * 50_000)) == ["a", "\t" + " " * 49_999, " "]
    text = "the world, " * 10_000
    assert tok.ids(text, limit=10) == tok.ids(text[:200])[:10]


def test_long_words_merge_exactly_like_short_ones(monkeypatch):
    """Words over ``_LONG_WORD`` bytes take the heap: the same pieces as the per-merge rescan keras-hub does."""
    vocab, merges = train_bpe(TRAIN, merges=300)
    rng = random.Random(0)
    alphabet = ["the", "th", "e", "a", "ing", "in", "é", "東", "x", "'", " ", "😀", "re", "er"]
    words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(10, 120))) for _ in range(300)]
    words += ["the" * 200, "é" * 100, "ab" * 100]
    fast = BytePairTokenizer(vocab, merges)
    heap = [fast.pieces(w) for w in words]
    assert sum(len(w.encode()) > _bpe._LONG_WORD for w in words) > 250
    monkeypatch.setattr(_bpe, "_LONG_WORD", 10**9)
    assert [BytePairTokenizer(vocab, merges).pieces(w) for w in words] == heap
    # A 90,000-byte word (one JSON instance under the runtime's 100,000-character cap) is no stall.
    monkeypatch.undo()
    word = "the" * 30_000
    pieces = fast.pieces(word)
    assert "".join(pieces) == word and len(pieces) < len(word)  # merged, and nothing lost
    assert min(fast.ids(word)) >= 0
