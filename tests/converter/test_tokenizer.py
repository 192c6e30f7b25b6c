"""The runtime's pure-Python WordPiece gives the ids keras-hub gives in training (tensorflow-text's
FastWordpieceTokenizer inside a tf.data pipeline, and keras-hub's eager call), on a varied corpus: accents,
case folding, CJK, scripts with combining marks, punctuation, control/format characters, over-long words
and over-long text; and the packed ``token_ids`` equal BertTextClassifierPreprocessor's."""

from __future__ import annotations

import numpy as np
import pytest
from converter_data import make_corpus

pytestmark = pytest.mark.convert

TRAIN = [
    "The quick brown fox jumps over the lazy dog. Don't panic!",
    "Café crème, naïve résumé, déjà vu — São Paulo, Zürich, Ærøskøbing.",
    "Straße, STRASSE, İstanbul, ΣΊΣΥΦΟΣ, Ωμέγα, Москва и Санкт-Петербург.",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "हिन्दी में लिखा गया वाक्य। العربية لغة جميلة.",
    "Numbers 3.14 and 1,000,000; e-mail a.b@example.com; url https://x.org/a?b=c#d",
    "Emoji 😀👍🏽 and symbols © ® ™ ° ± × ÷ € £ ¥ §",
]
CORPUS = [
    *TRAIN,
    "Hello, World!!",
    "CAFÉ Crème brûlée",
    "naïve\u00a0résumé",  # NBSP: not a split point
    "ﬁne ﬂow ① ½ ＡＢＣ full-width",  # NFKC compatibility characters
    "東京タワー and 中文 mixed中文english",
    "zero\u200bwidth soft\u00adhyphen \u200e\u200fmarks \ufeffbom",
    # (No NUL: TensorFlow's graph path stops reading a string at "\x00", keras-hub's eager path does not.)
    "tabs\tand\nnewlines\r\nand\x0bvertical\x0cfeed\x1fus\x7fdel\x85nel",
    "Ǆemal ǅ ǆ Ⅻ ㎏ ﬀ",
    "\u0301accent-first e\u0301 combining",
    "한국어 텍스트 정규화",
    "Ὀδυσσεύς ΌΣΟΣ",
    "x" * 150,  # one word over 100 bytes: [UNK]
    "é" * 51 + " " + "a" * 99,  # 102 bytes vs 99
    "«quoted» „low“ ‹single› ¿qué? ¡sí! … — –",
    "$100 ^caret^ `tick` ~tilde~ |pipe| \\back\\",
    "",
    "   \t\n ",
    "the " * 300,  # over-long text: truncated to the sequence length
]


@pytest.fixture(scope="module")
def vocab():
    keras_hub = pytest.importorskip("keras_hub")  # the dev extra; keras-hub needs tensorflow-text
    import tensorflow as tf

    texts, _ = make_corpus(300, seed=5)
    return keras_hub.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(TRAIN * 20 + texts),
        vocabulary_size=600,
        lowercase=False,
        strip_accents=False,
        reserved_tokens=["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"],
    )


def graph_ids(tokenizer, texts):
    """Ids as a tf.data training pipeline computes them (the TensorFlow graph path)."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(len(texts)).map(tokenizer)
    batch = next(iter(dataset))
    if isinstance(batch, dict):
        batch = batch["token_ids"]
    return batch.to_list() if hasattr(batch, "to_list") else np.asarray(batch).tolist()


@pytest.mark.parametrize(("lowercase", "strip_accents"), [(True, True), (False, False), (True, False)])
def test_wordpiece_ids_equal_keras_hub(vocab, lowercase, strip_accents):
    import keras_hub
    from onnxfn.runtime._tokenizers import WordPieceTokenizer

    keras_tok = keras_hub.tokenizers.WordPieceTokenizer(
        vocabulary=vocab, lowercase=lowercase, strip_accents=strip_accents
    )
    ours = WordPieceTokenizer(vocab, lowercase=lowercase, strip_accents=strip_accents)
    want_graph = graph_ids(keras_tok, CORPUS)
    want_eager = [list(map(int, row)) for row in keras_tok(CORPUS)]
    got = [ours.ids(text) for text in CORPUS]
    for text, g, e, mine in zip(CORPUS, want_graph, want_eager, got, strict=True):
        assert mine == g == e, text
    unknown = vocab.index("[UNK]")
    assert sum(unknown in row for row in got) >= 3  # the corpus really reaches the unknown token
    assert max(len(row) for row in got) >= 300


def test_packed_token_ids_equal_the_bert_preprocessor(vocab):
    import keras_hub
    from onnxfn.converter._textmodels import tokenizer_spec
    from onnxfn.runtime._text import TextPreprocessor

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=24)
    spec = tokenizer_spec(preprocessor)
    assert spec["max_len"] == 24 and spec["cls"] == "[CLS]" and spec["pad"] == "[PAD]"
    ours = TextPreprocessor(spec, dtype=np.int32)(CORPUS)
    assert ours.dtype == np.int32
    np.testing.assert_array_equal(ours, np.asarray(graph_ids(preprocessor, CORPUS)))
    eager = preprocessor(CORPUS)["token_ids"]
    np.testing.assert_array_equal(ours, np.asarray(eager))


def test_a_bare_tokenizer_with_a_sequence_length(vocab):
    """A WordPieceTokenizer(sequence_length=N) used directly: ids only, padded with 0, no [CLS]/[SEP]."""
    import keras_hub
    from onnxfn.converter._textmodels import tokenizer_spec
    from onnxfn.runtime._text import TextPreprocessor

    keras_tok = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocab, sequence_length=12, lowercase=True)
    spec = tokenizer_spec(keras_tok)
    assert spec["cls"] is None and spec["sep"] is None and spec["max_len"] == 12
    ours = TextPreprocessor(spec, dtype=np.int32)(CORPUS)
    np.testing.assert_array_equal(ours, np.asarray(graph_ids(keras_tok, CORPUS)))
