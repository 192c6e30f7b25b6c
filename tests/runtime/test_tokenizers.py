"""The runtime's pure-Python WordPiece tokenizer (no TensorFlow): the rules BERT's tokenizer applies, one by
one, on a hand-made vocabulary. Parity with keras-hub/tensorflow-text on a corpus is in
tests/converter/test_tokenizer.py."""

from __future__ import annotations

import numpy as np
import pytest
from onnxfn.runtime import APIError
from onnxfn.runtime._text import TextPreprocessor
from onnxfn.runtime._tokenizers import SubwordPreprocessor, WordPieceTokenizer, case_fold

SPECIAL = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
PIECES = ["un", "##aff", "##able", "##ably", "run", "##ning", "##n", "the", "cafe", "café", "ss", "stra"]
PIECES += ["##ss", "##e", "东", "京", "!", ",", ".", "¿", "«", "»", "$", "^", "a", "##a", "fine", "x", "##x"]
VOCAB = SPECIAL + PIECES


def ids(tokens: list[str]) -> list[int]:
    return [VOCAB.index(t) for t in tokens]


def test_greedy_longest_match_with_continuations():
    tok = WordPieceTokenizer(VOCAB)
    assert tok.tokens("unaffable") == ["un", "##aff", "##able"]
    assert tok.tokens("unaffably running") == ["un", "##aff", "##ably", "run", "##ning"]
    assert tok.tokens("runn") == ["run", "##n"]  # longest first: "run" then "##n"
    assert tok.ids("the") == ids(["the"])


def test_a_word_without_an_exact_split_is_one_unknown():
    tok = WordPieceTokenizer(VOCAB)
    assert tok.tokens("unaffz the") == ["[UNK]", "the"]  # not "un ##aff [UNK]"
    assert tok.tokens("Run") == ["[UNK]"]  # cased tokenizer: "R" is not in the vocabulary


def test_words_longer_than_100_bytes_are_unknown():
    tok = WordPieceTokenizer(VOCAB)
    assert tok.tokens("x" * 100) == ["x"] + ["##x"] * 99
    assert tok.tokens("x" * 101) == ["[UNK]"]
    assert tok.tokens("a" * 34 + "é" * 33) == ["[UNK]"]  # 67 characters but 100+ UTF-8 bytes


def test_split_on_spaces_punctuation_and_cjk():
    tok = WordPieceTokenizer(VOCAB)
    assert tok.words("the,cafe!  run\tthe\nx") == ["the", ",", "cafe", "!", "run", "the", "x"]
    assert tok.words("东京the") == ["东", "京", "the"]
    assert tok.words("¿x? «a» $x^") == ["¿", "x", "?", "«", "a", "»", "$", "x", "^"]
    # Control and format characters separate words and vanish; NBSP is not an RE2 space: it stays inside.
    assert tok.words("a\x00b\u200bc") == ["a", "b", "c"]
    assert tok.words("a\u00a0b") == ["a\u00a0b"]
    assert WordPieceTokenizer(VOCAB, split_on_cjk=False).words("东京the") == ["东京the"]


def test_lowercase_is_unicode_case_folding():
    assert case_fold("Straße") == "strasse"
    assert case_fold("ＡＢＣ") == "abc"  # NFKC: full-width letters
    assert case_fold("ﬁne") == "fine"  # NFKC: the ligature
    assert case_fold("soft\u00adhyphen") == "softhyphen"  # default-ignorable code points are dropped
    tok = WordPieceTokenizer(VOCAB, lowercase=True)
    assert tok.tokens("THE Straße ﬁne") == ["the", "stra", "##ss", "##e", "fine"]
    # A special token typed in the text is not special: it splits into "[", "cls", "]" (none in VOCAB).
    assert tok.tokens("[CLS]") == ["[UNK]"] * 3


def test_accents_are_kept_unless_stripped():
    assert WordPieceTokenizer(VOCAB).tokens("café") == ["café"]
    assert WordPieceTokenizer(VOCAB, strip_accents=True).tokens("café") == ["cafe"]
    assert WordPieceTokenizer(VOCAB, strip_accents=True, lowercase=True).tokens("CAFÉ") == ["cafe"]


def test_packing_adds_cls_sep_and_pads():
    spec = {"tokenizer": "wordpiece", "vocab": VOCAB, "max_len": 8, "lowercase": True}
    pre = SubwordPreprocessor(spec, dtype=np.int32)
    row = pre.row("The cafe!")
    assert row.dtype == np.int32
    assert row.tolist() == [*ids(["[CLS]", "the", "cafe", "!", "[SEP]"]), 0, 0, 0]
    # Over-long text keeps the first max_len - 2 tokens, then [SEP]: keras-hub's single-segment truncation.
    long = pre.row("the " * 50)
    assert long.tolist() == ids(["[CLS]"] + ["the"] * 6 + ["[SEP]"])
    bare = SubwordPreprocessor({**spec, "cls": None, "sep": None, "max_len": 3})
    assert bare.row("the the the the").tolist() == ids(["the"] * 3)
    assert SubwordPreprocessor(spec).row("").tolist() == ids(["[CLS]", "[SEP]"]) + [0] * 6


def test_text_preprocessor_dispatches_on_the_spec():
    spec = {"tokenizer": "wordpiece", "vocab": VOCAB, "max_len": 6}
    pre = TextPreprocessor(spec, dtype=np.int64, max_chars=50)
    batch = pre(["the", "unaffable run"])
    assert batch.shape == (2, 6) and batch.dtype == np.int64
    assert batch[1].tolist() == ids(["[CLS]", "un", "##aff", "##able", "run", "[SEP]"])
    assert pre.tokens("unaffable") == ["un", "##aff", "##able"]
    with pytest.raises(APIError, match="above the limit"):
        pre(["x" * 51])
    with pytest.raises(APIError, match="must be strings"):
        pre([3])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tokenizer": "sentencepiece"}, "not supported"),
        ({"vocab": []}, "non-empty 'vocab'"),
        ({"cls": "<s>"}, "cls token '<s>' is not in the vocabulary"),
        ({"unk": "<unk>"}, "no unknown token"),
        ({"max_len": 2}, "no room"),
    ],
)
def test_bad_specs_are_refused_at_load(change, message):
    spec = {"tokenizer": "wordpiece", "vocab": VOCAB, "max_len": 8, **change}
    with pytest.raises(ValueError, match=message):
        TextPreprocessor(spec)
