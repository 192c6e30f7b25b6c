"""Text models: Keras ``TextVectorization`` cannot go through tf2onnx (string ops), so it stays outside the
graph. ``text_preprocess`` turns a fitted layer into the ``onnxfn.preprocess`` spec the runtime's
``TextPreprocessor`` reproduces, so the served model classifies raw text exactly as Keras did."""

from __future__ import annotations

from typing import Any

from ._errors import ConversionError

_STANDARDIZE = {
    "lower_and_strip_punctuation": (True, True),
    "lower": (True, False),
    "strip_punctuation": (False, True),
    None: (False, False),
}


def text_preprocess(vectorizer: Any, *, max_len: int | None = None) -> dict[str, Any]:
    """The ``preprocess`` dict for ``convert`` from a fitted ``keras.layers.TextVectorization``.

    Convert the model that takes the layer's *output* (token ids, or the multi-hot/count/tf-idf vector);
    ``max_len`` is needed for ``int`` output without ``output_sequence_length``. Custom standardize/split
    callables cannot be reproduced outside TensorFlow and raise :class:`ConversionError`.
    """
    config = vectorizer.get_config()
    standardize = config.get("standardize")
    if standardize not in _STANDARDIZE:
        raise ConversionError(
            f"TextVectorization standardize={standardize!r} is custom: onnxfn reproduces only "
            "'lower_and_strip_punctuation', 'lower', 'strip_punctuation' or None"
        )
    if config.get("split") != "whitespace":
        raise ConversionError(
            f"TextVectorization split={config.get('split')!r}: onnxfn reproduces 'whitespace' only"
        )
    mode = config.get("output_mode", "int")
    if mode not in ("int", "multi_hot", "count", "tf_idf"):
        raise ConversionError(f"TextVectorization output_mode={mode!r} is not supported")
    lowercase, strip = _STANDARDIZE[standardize]
    ngrams = config.get("ngrams")
    spec: dict[str, Any] = {
        "vocab": [str(token) for token in vectorizer.get_vocabulary()],
        "output_mode": mode,
        "lowercase": lowercase,
        "strip_punctuation": strip,
        "ngrams": 1
        if ngrams is None
        else (list(ngrams) if isinstance(ngrams, (list, tuple)) else int(ngrams)),
    }
    if mode == "int":
        length = max_len or config.get("output_sequence_length")
        if not length:
            raise ConversionError(
                "int output without output_sequence_length: pass max_len= (the model's input length)"
            )
        spec["max_len"] = int(length)
    if mode == "tf_idf":
        spec["idf"] = [float(x) for x in _idf_weights(vectorizer, len(spec["vocab"]))]
    return spec


def _idf_weights(vectorizer: Any, size: int) -> list[float]:
    import numpy as np

    lookup = getattr(vectorizer, "_lookup_layer", None)
    weights = getattr(lookup, "idf_weights", None)
    if weights is not None:
        values = np.asarray(weights, dtype=np.float32).reshape(-1)
        if len(values) >= size:
            # The shortest decimal that round-trips each float32 (0.86050487, not 0.8605048656463623):
            # the same numbers, a third less JSON in every model file.
            return [float(str(v)) for v in values[:size]]
    raise ConversionError(
        "cannot read this TextVectorization layer's idf weights: adapt() it before converting"
    )
