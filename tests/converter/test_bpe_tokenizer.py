"""The runtime's pure-Python byte-level BPE gives the ids keras-hub gives in training (``BytePairTokenizer``
inside a ``tf.data`` pipeline: what ``fit``/``predict``/``evaluate`` run on lists of strings), on a varied
corpus (tests/bpe_data.py: contractions, numbers in several scripts, runs of spaces/tabs/newlines, NBSP and
keras-hub's other special spaces, accents precomposed and combining, CJK, emoji with modifiers and ZWJ, RTL,
zero-width and control characters, special tokens typed in the text, over-long text, the empty string) and
on seeded random strings over the characters where the rules meet; the packed ``token_ids`` equal
``RobertaTextClassifierPreprocessor``'s."""

from __future__ import annotations

import random

import numpy as np
import pytest
from bpe_data import CORPUS, ROBERTA_SPECIAL, TRAIN, train_bpe

pytestmark = pytest.mark.convert

# Characters where keras-hub's rules meet: every kind of space, its marker "६", apostrophes and
# contraction letters, digits, letters, combining marks, emoji, special tokens and their stand-ins.
TRICKY = [
    *" \t\n\r\x0b\x0c\x1c\x85\u00a0\u2009\u202f\u3000\u2003\u200b\u200d",
    *"'sdtlmvreSD६१a東é",
    "\u0301",
]
TRICKY += [
    *"   \t\n",
    *"😀🏽!.,-<>/1Ĵ\x00",
    "ĴA",
    "<s>",
    "</s>",
    "<pad>",
    "'ll",
    "  ",
    "\u00a0\u2009\u202f\u3000",
]


@pytest.fixture(scope="module")
def bpe():
    pytest.importorskip("keras_hub")  # the dev extra; keras-hub needs tensorflow-text
    return train_bpe(TRAIN * 3, merges=400, special=ROBERTA_SPECIAL)


def graph_ids(layer, texts):
    """Ids as a tf.data training pipeline computes them (keras-hub's TensorFlow path)."""
    import tensorflow as tf

    batch = next(iter(tf.data.Dataset.from_tensor_slices(texts).batch(len(texts)).map(layer)))
    if isinstance(batch, dict):
        batch = batch["token_ids"]
    return batch.to_list() if hasattr(batch, "to_list") else np.asarray(batch).tolist()


def fuzz(n=400, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.choice(TRICKY) for _ in range(rng.randint(1, 40))) for _ in range(n)]


@pytest.mark.parametrize(("special", "add_prefix_space"), [(ROBERTA_SPECIAL, False), (None, True)])
def test_bpe_ids_equal_keras_hub(bpe, special, add_prefix_space):
    import keras_hub
    from onnxfn.runtime._bpe import BytePairTokenizer

    vocab, merges = bpe
    keras_tok = keras_hub.tokenizers.BytePairTokenizer(
        vocab, merges, unsplittable_tokens=special, add_prefix_space=add_prefix_space
    )
    ours = BytePairTokenizer(vocab, merges, special=special or (), add_prefix_space=add_prefix_space)
    # (TensorFlow's merge loop is slow on long texts: the second variant keeps to the shorter ones.)
    texts = CORPUS + fuzz() if special else [t for t in CORPUS if len(t) < 200] + fuzz(150, seed=2)
    for text, want in zip(texts, graph_ids(keras_tok, texts), strict=True):
        assert ours.ids(text) == want, repr(text)
    pieces = [p for text in CORPUS for p in ours.tokens(text)]
    assert sum(len(p) > 2 for p in pieces) > 100  # real merges, not just byte fallback
    assert max(len(ours.ids(t)) for t in texts) > (300 if special else 30)  # the over-long text


def test_pieces_outside_the_vocabulary_get_keras_hubs_minus_one(bpe):
    """A vocabulary without the bytes of 4-byte characters (emoji): keras-hub's lookup gives -1, so do we."""
    import keras_hub
    from onnxfn.runtime._bpe import BytePairTokenizer, bytes_to_unicode

    vocab, merges = bpe
    missing = {c for b, c in bytes_to_unicode().items() if b >= 0xF0}
    vocab = {t: i for i, t in enumerate(t for t in vocab if t not in missing)}
    merges = [m for m in merges if all(x in vocab for x in m.split(" "))]
    keras_tok = keras_hub.tokenizers.BytePairTokenizer(vocab, merges, unsplittable_tokens=ROBERTA_SPECIAL)
    want = graph_ids(keras_tok, CORPUS)
    assert sum(-1 in row for row in want) >= 2
    ours = BytePairTokenizer(vocab, merges, special=ROBERTA_SPECIAL)
    assert [ours.ids(t) for t in CORPUS] == want


def test_packed_token_ids_equal_the_roberta_preprocessor(bpe):
    import keras_hub
    from onnxfn.converter._textmodels import tokenizer_spec
    from onnxfn.runtime._text import TextPreprocessor

    vocab, merges = bpe
    tokenizer = keras_hub.models.RobertaTokenizer(vocabulary=vocab, merges=merges)
    preprocessor = keras_hub.models.RobertaTextClassifierPreprocessor(tokenizer, sequence_length=20)
    spec = tokenizer_spec(preprocessor)
    assert spec["tokenizer"] == "bpe" and spec["max_len"] == 20
    assert (spec["cls"], spec["sep"], spec["pad"]) == ("<s>", "</s>", "<pad>")
    texts = CORPUS + fuzz(100, seed=1)
    ours = TextPreprocessor(spec, dtype=np.int32)(texts)
    assert ours.dtype == np.int32
    np.testing.assert_array_equal(ours, np.asarray(graph_ids(preprocessor, texts)))


def test_a_bare_tokenizer_with_a_sequence_length(bpe):
    """A BytePairTokenizer(sequence_length=N) used directly: ids only, padded with id 0, no markers."""
    import keras_hub
    from onnxfn.converter._textmodels import tokenizer_spec
    from onnxfn.runtime._text import TextPreprocessor

    vocab, merges = bpe
    keras_tok = keras_hub.tokenizers.BytePairTokenizer(vocab, merges, sequence_length=12)
    spec = tokenizer_spec(keras_tok)
    assert spec["cls"] is None and spec["sep"] is None and spec["max_len"] == 12 and spec["special"] == []
    ours = TextPreprocessor(spec, dtype=np.int32)(CORPUS)
    np.testing.assert_array_equal(ours, np.asarray(graph_ids(keras_tok, CORPUS)))
