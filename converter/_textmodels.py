"""Text models whose first step cannot go into ONNX: it moves into ``onnxfn.preprocess`` and the runtime
redoes it in pure Python (runtime/_text.py, runtime/_tokenizers.py).

- A Keras model with ``TextVectorization`` inside (string input): the vectorizer's vocabulary and settings go
  into the metadata, the graph from the vectorizer's output onwards goes into ONNX.
- A BERT-style model (keras-hub ``TextClassifier``, or any model taking ``token_ids`` with ``padding_mask`` /
  ``segment_ids``) with a WordPiece tokenizer (BERT) or a byte-level BPE tokenizer (RoBERTa, GPT-2): the
  tokenizer's vocabulary (and merges) and settings go into the metadata and the ONNX graph takes
  ``token_ids`` alone (one segment: the padding mask is ``token_ids != pad`` and the segment ids are zeros,
  computed inside the graph exactly as keras-hub's preprocessor does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import ConversionError
from ._load import InputSpec, Source, _sha256, _walk_layers, load
from ._text import text_preprocess

BERT_INPUTS = ("token_ids", "padding_mask", "segment_ids")


@dataclass
class TextModel:
    """What ``convert`` gets for a text model: the graph to convert and the preprocessing taken out of it."""

    source: Source
    preprocess: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what was found and moved
    warnings: list[str] = field(default_factory=list)  # shown unless the user's preprocess settles them
    reference: Callable[[list[str]], np.ndarray] | None = None  # Keras on raw text, end to end

    def verify(self, path: Path, preprocess: dict[str, Any], atol: float) -> str | None:
        """Raw text through the runtime's preprocessing and the ONNX file == Keras on the same text.

        The texts are made from the vocabulary itself (mixed case, punctuation, an unknown word, an
        over-long one), so every conversion checks the tokenization that moved out of the graph.
        """
        if self.reference is None:
            return None
        import onnxruntime as ort
        from onnxfn.runtime._text import TextPreprocessor

        texts = sample_texts(_words(preprocess), preprocess.get("max_len") or 16)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        first = session.get_inputs()[0]
        from onnxfn._wire import onnx_numpy_dtype

        pre = TextPreprocessor(preprocess, dtype=onnx_numpy_dtype(first.type))
        got = np.asarray(session.run(None, {first.name: pre(texts)})[0], dtype=np.float64)
        want = np.asarray(self.reference(texts), dtype=np.float64).reshape(got.shape)
        diff = float(np.max(np.abs(got - want)))
        if not np.isfinite(diff) or diff > atol:
            worst = texts[int(np.argmax(np.abs(got - want).reshape(len(texts), -1).max(axis=1)))]
            raise ConversionError(
                f"raw text served by onnxfn differs from Keras by {diff:.3g} (> {atol:g}), e.g. on "
                f"{worst[:80]!r}: the runtime cannot reproduce this model's text preprocessing; report the "
                "vectorizer/tokenizer settings; nothing was written"
            )
        return f"text parity: max |served - keras| = {diff:.2e} on {len(texts)} texts, raw text end to end"


def text_model(
    model: Any, *, tokenizer: Any = None, preprocess: dict[str, Any] | None = None
) -> tuple[Source, TextModel | None]:
    """The :class:`Source` to convert, and the text preprocessing moved out of it (None: not a text model).

    ``preprocess``: the user's own settings; its ``max_len`` gives the sequence length when neither the
    tokenizer nor the model's input says it.
    """
    user_len = preprocess.get("max_len") if isinstance(preprocess, dict) else None
    keras_model, path = _keras(model)
    if keras_model is None:
        if tokenizer is not None:
            source = load(model)
            spec = tokenizer_spec(tokenizer, max_len=_fixed_length(source) or user_len)
            return source, TextModel(source, spec)
        return load(model), None
    found = _string_input_model(keras_model)
    if found is None:
        found = _bert_model(keras_model, tokenizer, user_len)
    if found is None:
        source = load(keras_model)
        if tokenizer is not None:
            found = TextModel(source, tokenizer_spec(tokenizer, max_len=_fixed_length(source) or user_len))
    source = found.source if found is not None else source
    if path is not None:
        source.path, source.sha256 = path, _sha256(path)
    if found is None and _looks_like_ids(keras_model, source):
        return source, TextModel(
            source,
            {},
            warnings=[
                "the model takes integer token ids (it starts with an Embedding) and no vocabulary was "
                "found: served as raw tensors; keep TextVectorization inside the model, pass tokenizer= "
                "(--tokenizer), or preprocess={'vocab': [...], 'max_len': N}"
            ],
        )
    return source, found


# -- loading ---------------------------------------------------------------------------------------


def _keras(model: Any) -> tuple[Any, Path | None]:
    """A ``keras.Model`` for models we may need to take apart (objects and ``.keras`` files), else None."""
    import keras

    if isinstance(model, keras.Model):
        return model, None
    if isinstance(model, (str, Path)) and Path(model).suffix == ".keras" and Path(model).is_file():
        config = _archive_config(Path(model))
        if not any(marker in config for marker in _TEXT_MARKERS):
            return None, None  # not a text model: the ordinary loader takes it
        if "keras_hub" in config:
            _import_keras_hub()  # registers keras-hub's classes so its models deserialize
        try:
            return keras.models.load_model(model, compile=False), Path(model)
        except Exception:
            return None, None  # let the ordinary loader report it
    return None, None


_TEXT_MARKERS = ('"string"', "TextVectorization", "keras_hub", "token_ids", "Embedding")


def _archive_config(path: Path) -> str:
    """The model config inside a ``.keras`` archive (a zip), or "" when it cannot be read."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read("config.json").decode("utf-8", "replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return ""


def _import_keras_hub() -> Any:
    try:
        import keras_hub
    except ImportError:
        return None
    return keras_hub


# -- TextVectorization inside the model --------------------------------------------------------------


def _string_input_model(model: Any) -> TextModel | None:

    strings = [t for t in model.inputs if "string" in str(getattr(t, "dtype", ""))]
    if not strings:
        return None
    if len(model.inputs) != 1:
        raise ConversionError(
            f"the model has {len(model.inputs)} inputs, {len(strings)} of them strings: onnxfn converts "
            "text models with one string input"
        )
    vectorizers = [layer for layer in _walk_layers(model) if type(layer).__name__ == "TextVectorization"]
    if len(vectorizers) != 1:
        raise ConversionError(
            "the model takes strings but has "
            + (
                "no TextVectorization layer"
                if not vectorizers
                else f"{len(vectorizers)} TextVectorization layers"
            )
            + ": ONNX has no string ops, so onnxfn moves exactly one TextVectorization (applied to the input) "
            "into the metadata; build the model as Input(dtype='string') -> TextVectorization -> ..."
        )
    vectorizer = vectorizers[0]
    config = vectorizer.get_config()
    max_len = config.get("output_sequence_length")
    if config.get("output_mode", "int") == "int" and not max_len:
        raise ConversionError(
            f"TextVectorization {vectorizer.name!r} has output_mode='int' without output_sequence_length: "
            "set output_sequence_length so the served model gets fixed-length ids"
        )
    spec = text_preprocess(vectorizer)
    rest = _after(model, vectorizer)
    ids = rest.inputs[0]
    dtype = str(np.dtype(getattr(ids, "dtype", "int64")))
    shape = (None, *[None if d is None else int(d) for d in ids.shape[1:]])
    inner = load(rest)
    inner.inputs = [InputSpec("input", shape, dtype)]
    notes = [
        f"TextVectorization {vectorizer.name!r} ({len(spec['vocab'])} tokens, output_mode "
        f"{spec['output_mode']}) moved into onnxfn.preprocess: the runtime vectorizes text the same way"
    ]
    rank = len(model.inputs[0].shape)

    def reference(texts: list[str]) -> np.ndarray:
        import tensorflow as tf

        batch = tf.constant([[t] for t in texts] if rank == 2 else texts)
        return np.asarray(_first(model(batch, training=False)))

    return TextModel(inner, spec, notes, reference=reference)


def _after(model: Any, vectorizer: Any) -> Any:
    """The model from ``vectorizer``'s output onwards."""
    import keras

    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
        index = layers.index(vectorizer) if vectorizer in layers else -1
        if index != 0:
            raise ConversionError(
                f"TextVectorization {vectorizer.name!r} must be the first layer of the Sequential model"
            )
        shape = vectorizer.compute_output_shape(tuple(model.inputs[0].shape))
        dtype = "int64" if vectorizer.get_config().get("output_mode", "int") == "int" else "float32"
        ids = keras.Input(shape=tuple(shape[1:]), dtype=dtype, name="input")
        x = ids
        for layer in layers[1:]:
            x = layer(x)
        return keras.Model(ids, x)
    inputs = {id(t) for t in model.inputs}
    for node in getattr(vectorizer, "_inbound_nodes", []):
        if any(id(t) in inputs for t in node.input_tensors):
            try:
                return keras.Model(node.output_tensors[0], model.outputs)
            except Exception as exc:
                raise ConversionError(
                    f"cannot separate the model after TextVectorization {vectorizer.name!r}: {exc}"
                ) from None
    raise ConversionError(
        f"TextVectorization {vectorizer.name!r} is not applied to the model's string input directly: "
        "onnxfn can only move a vectorizer that reads the raw text"
    )


# -- BERT-style models with a WordPiece tokenizer ----------------------------------------------------


def _bert_model(model: Any, tokenizer: Any, user_len: int | None = None) -> TextModel | None:
    names = _input_names(model)
    if "token_ids" not in names or not set(names) <= set(BERT_INPUTS):
        return None
    preprocessor = getattr(model, "preprocessor", None)
    given = tokenizer if tokenizer is not None else preprocessor
    if given is None:
        raise ConversionError(
            "this BERT-style model takes token_ids but has no preprocessor: pass tokenizer= (the keras-hub "
            "tokenizer or preprocessor it was trained with, a WordPiece vocab.txt, or a BPE folder with "
            "vocabulary.json and merges.txt) so the served model tokenizes text the same way"
        )
    token_spec = next(t for t in _input_tensors(model) if _name(t) == "token_ids")
    length = token_spec.shape[1] if len(token_spec.shape) > 1 else None
    spec = tokenizer_spec(given, max_len=int(length) if length else user_len)
    pad = _token_id(spec, spec.get("pad"))
    dtype = str(np.dtype(getattr(token_spec, "dtype", "int32")))
    keys = list(names)

    def features(ids: Any) -> dict[str, Any]:
        from keras import ops

        ids = ops.convert_to_tensor(ids)
        out = {"token_ids": ids}
        if "padding_mask" in keys:
            out["padding_mask"] = ops.not_equal(ids, pad)
        if "segment_ids" in keys:
            out["segment_ids"] = ops.zeros_like(ids)
        return out

    def call(ids: Any) -> Any:
        return _first(model(features(ids), training=False))

    def predict(arrays: list[np.ndarray]) -> np.ndarray:
        return np.asarray(_first(model(features(arrays[0]), training=False)))

    layers = [(layer.name, type(layer).__name__) for layer in _walk_layers(model)]
    source = Source(
        call=call,
        inputs=[InputSpec("token_ids", (None, spec["max_len"]), dtype)],
        predict=predict,
        keras_model=model,
        layers=layers,
    )
    notes = [
        f"{spec['tokenizer']} tokenizer ({len(spec['vocab'])} tokens, max_len {spec['max_len']}) moved into "
        "onnxfn.preprocess; the ONNX model takes token_ids (padding mask and segment ids computed inside)"
    ]
    reference = None
    if hasattr(given, "tokenizer") and hasattr(given, "sequence_length"):  # a keras-hub preprocessor

        def reference(texts: list[str]) -> np.ndarray:
            # Through tf.data, as fit/predict/evaluate run the preprocessor on lists of strings: keras-hub
            # 0.32's eager BPE path does not pre-split (docs/converter.md), its tf.data path does.
            import tensorflow as tf

            features = next(iter(tf.data.Dataset.from_tensor_slices(texts).batch(len(texts)).map(given)))
            return np.asarray(_first(model({k: features[k] for k in keys}, training=False)))

    warnings = []
    if spec["tokenizer"] == "bpe" and _grain_installed():
        warnings.append(
            "grain is installed: keras-hub then fits and predicts through its eager BPE path, which does not "
            "pre-tokenize (keras-hub 0.32) and gives other ids than its tf.data path, which onnxfn serves; "
            "train through tf.data (a tf.data.Dataset, or without grain) so served ids match training"
        )
    return TextModel(source, spec, notes, warnings, reference=reference)


def _grain_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("grain") is not None


def tokenizer_spec(tokenizer: Any, *, max_len: int | None = None) -> dict[str, Any]:
    """The ``onnxfn.preprocess`` spec of a keras-hub WordPiece or byte-level BPE tokenizer or preprocessor,
    a WordPiece ``vocab.txt``, or a BPE directory (``vocabulary.json`` + ``merges.txt``)."""
    if isinstance(tokenizer, (str, Path)):
        if Path(tokenizer).is_dir():
            return _bpe_files_spec(Path(tokenizer), max_len)
        return _vocab_file_spec(Path(tokenizer), max_len)
    preprocessor = None
    if hasattr(tokenizer, "tokenizer") and hasattr(tokenizer, "sequence_length"):
        preprocessor, tokenizer = tokenizer, tokenizer.tokenizer
    kind = type(tokenizer).__name__
    if hasattr(tokenizer, "merges") and isinstance(getattr(tokenizer, "vocabulary", None), dict):
        spec = _bpe_spec(tokenizer)
    elif hasattr(tokenizer, "suffix_indicator") and hasattr(tokenizer, "vocabulary"):
        spec = _wordpiece_spec(tokenizer)
    else:
        raise ConversionError(
            f"tokenizer {kind} is not supported: onnxfn reproduces WordPiece tokenizers (BERT-style, "
            "keras_hub.tokenizers.WordPieceTokenizer) and byte-level BPE tokenizers (RoBERTa/GPT-2-style, "
            "keras_hub.tokenizers.BytePairTokenizer), and their model-specific subclasses"
        )
    if preprocessor is not None:
        truncate = getattr(preprocessor, "truncate", "round_robin")
        if truncate not in ("round_robin", "waterfall"):  # both keep the first tokens of a single segment
            raise ConversionError(f"preprocessor truncate={truncate!r} is not supported")
        spec.update(
            cls=getattr(tokenizer, "cls_token", None) or _token(tokenizer, "start_token_id"),
            sep=getattr(tokenizer, "sep_token", None) or _token(tokenizer, "end_token_id"),
            pad=getattr(tokenizer, "pad_token", None)
            or _token(tokenizer, "pad_token_id")
            or _id_token(spec, 0),
            max_len=int(preprocessor.sequence_length),
        )
    else:  # a bare tokenizer: ids only, padded with 0 (keras-hub's sequence_length padding)
        length = getattr(tokenizer, "sequence_length", None) or max_len
        if not length:
            raise ConversionError(
                "cannot tell the sequence length: give the tokenizer a sequence_length, or give the model "
                "a fixed-length input"
            )
        spec.update(cls=None, sep=None, pad=_id_token(spec, 0), max_len=int(length))
    if max_len and spec["max_len"] != max_len:
        raise ConversionError(
            f"the tokenizer packs {spec['max_len']} tokens but the model's token_ids input has {max_len}"
        )
    return spec


def _wordpiece_spec(tokenizer: Any) -> dict[str, Any]:
    if getattr(tokenizer, "special_tokens_in_strings", False):
        raise ConversionError("WordPiece with special_tokens_in_strings=True is not supported")
    if getattr(tokenizer, "split", True) is not True:
        raise ConversionError("WordPiece with split=False (pre-split input) is not supported")
    return {
        "tokenizer": "wordpiece",
        "vocab": [str(t) for t in tokenizer.get_vocabulary()],
        "lowercase": bool(tokenizer.lowercase),
        "strip_accents": bool(tokenizer.strip_accents),
        "split": True,
        "split_on_cjk": bool(getattr(tokenizer, "split_on_cjk", True)),
        "suffix_indicator": str(tokenizer.suffix_indicator),
        "unk": str(tokenizer.oov_token),
        "max_bytes_per_word": 100,
    }


def _bpe_spec(tokenizer: Any) -> dict[str, Any]:
    """keras-hub ``BytePairTokenizer`` (and ``RobertaTokenizer``, ``GPT2Tokenizer``, …): vocabulary, merges,
    unsplittable tokens in keras-hub's order, prefix space."""
    if "string" in str(getattr(tokenizer, "compute_dtype", "int32")):
        raise ConversionError(
            "a BytePairTokenizer with dtype='string' gives tokens, not ids: use an int dtype"
        )
    return _bpe_settings(
        dict(tokenizer.vocabulary),
        list(tokenizer.merges),
        list(getattr(tokenizer, "unsplittable_tokens", None) or []),
        bool(getattr(tokenizer, "add_prefix_space", False)),
    )


def _bpe_settings(
    vocabulary: dict[str, int], merges: list[str], special: list[str], add_prefix_space: bool
) -> dict[str, Any]:
    try:
        from onnxfn.runtime._bpe import BytePairTokenizer

        BytePairTokenizer(vocabulary, merges, special=special)  # the runtime must accept what we write
    except ValueError as exc:
        raise ConversionError(f"the BPE tokenizer cannot be carried: {exc}") from None
    ids = sorted(int(i) for i in vocabulary.values())
    # A list (index = id) when the ids are 0..n-1, as in every GPT-2/RoBERTa vocabulary; else the mapping.
    contiguous = ids == list(range(len(ids)))
    vocab: list[str] | dict[str, int] = (
        [t for t, _ in sorted(vocabulary.items(), key=lambda kv: int(kv[1]))] if contiguous else vocabulary
    )
    return {
        "tokenizer": "bpe",
        "vocab": vocab,
        "merges": [str(m) for m in merges if not str(m).lstrip().startswith("#version:")],
        "special": [str(t) for t in special],
        "add_prefix_space": add_prefix_space,
    }


def _bpe_files_spec(folder: Path, max_len: int | None) -> dict[str, Any]:
    """keras-hub's tokenizer assets (``vocabulary.json``, ``merges.txt``; also GPT-2/RoBERTa's own
    ``vocab.json``), with the unsplittable tokens and markers of keras-hub's ``RobertaTokenizer`` (or
    ``GPT2Tokenizer``: ``<|endoftext|>``) when the vocabulary has them."""
    import json

    vocab_path = next((folder / n for n in ("vocabulary.json", "vocab.json") if (folder / n).is_file()), None)
    merges_path = folder / "merges.txt"
    if vocab_path is None or not merges_path.is_file():
        raise ConversionError(
            f"{folder} is not a BPE tokenizer: it needs vocabulary.json (or vocab.json) and merges.txt"
        )
    try:
        vocabulary = json.loads(vocab_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConversionError(f"{vocab_path} is not valid JSON: {exc}") from None
    if not isinstance(vocabulary, dict) or not all(isinstance(i, int) for i in vocabulary.values()):
        raise ConversionError(f"{vocab_path} must be a JSON object {{token: id}}")
    merges = [line.rstrip("\r\n") for line in merges_path.read_text(encoding="utf-8").splitlines()]
    merges = [m for m in merges if m]
    if not max_len:
        raise ConversionError(
            f"a tokenizer folder does not say the sequence length: give the model a fixed-length token_ids "
            f"input or add max_len to preprocess ({folder})"
        )
    roberta = all(t in vocabulary for t in ("<s>", "</s>", "<pad>"))
    special = [t for t in ("<s>", "</s>", "<pad>", "<mask>", "<|endoftext|>") if t in vocabulary]
    spec = _bpe_settings(vocabulary, merges, special, False)
    spec.update(
        cls="<s>" if roberta else None,
        sep="</s>" if roberta else None,
        pad="<pad>" if roberta else _id_token(spec, 0),
        max_len=int(max_len),
    )
    return spec


def _token_id(spec: dict[str, Any], token: str | None) -> int:
    """The id of ``token`` in a spec's vocabulary (0 when absent)."""
    vocab = spec.get("vocab") or []
    if isinstance(vocab, dict):
        return int(vocab.get(token, 0))
    return vocab.index(token) if token in vocab else 0


def _id_token(spec: dict[str, Any], index: int) -> str | None:
    vocab = spec.get("vocab") or []
    if isinstance(vocab, dict):
        return next((t for t, i in vocab.items() if int(i) == index), None)
    return str(vocab[index]) if index < len(vocab) else None


def _words(spec: dict[str, Any]) -> list[str]:
    """Words to make parity texts from: the vocabulary, with BPE tokens decoded back to text."""
    vocab = list(spec.get("vocab") or [])
    if spec.get("tokenizer") != "bpe":
        return vocab
    from onnxfn.runtime._bpe import bytes_to_unicode

    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    special = set(spec.get("special") or [])
    words = []
    for token in vocab:
        if token in special or not all(c in to_byte for c in token):
            continue
        word = bytes(to_byte[c] for c in token).decode("utf-8", "ignore").strip()
        if len(word) > 1:
            words.append(word)
    return words


def _vocab_file_spec(path: Path, max_len: int | None) -> dict[str, Any]:
    if not path.is_file():
        raise ConversionError(f"tokenizer vocabulary {path} does not exist (one WordPiece token per line)")
    vocab = [line.rstrip("\n").rstrip("\r") for line in path.read_text(encoding="utf-8").splitlines()]
    if "[UNK]" not in vocab:
        raise ConversionError(f"{path} has no [UNK] token: is it a WordPiece vocab.txt?")
    if not max_len:
        raise ConversionError(
            f"a vocab file does not say the sequence length: give the model a fixed-length token_ids input "
            f"or add max_len to preprocess ({path})"
        )
    bert = "[CLS]" in vocab and "[SEP]" in vocab
    return {
        "tokenizer": "wordpiece",
        "vocab": vocab,
        "lowercase": True,  # BERT uncased vocabularies; preprocess={'lowercase': false} for cased ones
        "strip_accents": True,
        "split": True,
        "split_on_cjk": True,
        "suffix_indicator": "##",
        "unk": "[UNK]",
        "max_bytes_per_word": 100,
        "cls": "[CLS]" if bert else None,
        "sep": "[SEP]" if bert else None,
        "pad": "[PAD]" if "[PAD]" in vocab else vocab[0],
        "max_len": int(max_len),
    }


def _token(tokenizer: Any, attr: str) -> str | None:
    index = getattr(tokenizer, attr, None)
    return tokenizer.id_to_token(int(index)) if index is not None else None


# -- helpers -----------------------------------------------------------------------------------------


def _input_tensors(model: Any) -> list[Any]:
    return list(model.inputs or [])


def _name(tensor: Any) -> str:
    return str(getattr(tensor, "name", "")).split(":")[0]


def _input_names(model: Any) -> list[str]:
    structure = getattr(model, "input", None)
    if isinstance(structure, dict):
        return list(structure)
    return [_name(t) for t in _input_tensors(model)]


def _first(out: Any) -> Any:
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out


def _fixed_length(source: Source) -> int | None:
    shape = source.inputs[0].shape
    return int(shape[1]) if len(shape) == 2 and isinstance(shape[1], int) else None


def _looks_like_ids(model: Any, source: Source) -> bool:
    if len(source.inputs) != 1 or np.dtype(source.inputs[0].dtype).kind not in "iu":
        return False
    layers = [layer for layer in _walk_layers(model) if type(layer).__name__ not in ("InputLayer",)]
    return bool(layers) and type(layers[0]).__name__ == "Embedding"


def sample_texts(vocab: list[str], max_len: int, n: int = 16) -> list[str]:
    """``n`` reproducible texts made of vocabulary words: mixed case, punctuation, an unknown word, accents,
    CJK, and one text longer than ``max_len`` tokens."""
    rng = np.random.default_rng(0)
    words = [w for w in vocab if w and not w.startswith(("[", "##")) and w.strip() == w and " " not in w]
    words = words or ["text"]
    texts = []
    for i in range(n):
        length = int(rng.integers(1, 12)) if i < n - 1 else max_len * 2 + 5
        picked = [str(words[j]) for j in rng.integers(0, len(words), size=length)]
        if i % 3 == 1:
            picked = [w.capitalize() for w in picked]
        if i % 4 == 2:
            picked.append(str(rng.choice(["!", "?", ",", "...", "'s"])))
        if i % 5 == 3:
            picked.insert(int(rng.integers(0, len(picked) + 1)), "zqxjunseen")
        if i % 7 == 4:
            picked.append("Café 東京")
        texts.append(" ".join(picked))
    texts.append("")
    return texts
