"""What users pass, as request bodies: input kinds, the PNG writer (with and without Pillow), batch bodies."""

from __future__ import annotations

import io

import numpy as np
import pytest
from onnxfn.client._encode import batch_body, encode, write_png


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 3), (5, 7, 4), (1, 1)])
def test_png_writer_without_pillow_decodes_exactly(shape):
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(write_png(pixels))))
    np.testing.assert_array_equal(decoded, pixels)


def test_png_fallback_when_pillow_is_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pil(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no Pillow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    item = encode(np.zeros((3, 4), dtype=np.uint8))
    assert item.kind == "image" and item.data.startswith(b"\x89PNG")


def test_encode_kinds(tmp_path):
    text = tmp_path / "review.txt"
    text.write_text("good film")
    assert encode(text).kind == "text" and encode(text).data == "good film"
    assert encode("just some words").kind == "text"
    assert encode(np.arange(3, dtype=np.int64)).data == [0, 1, 2]
    assert encode([[1, 2], [3, 4]]).kind == "tensor"
    assert encode(np.zeros((2, 2, 2), dtype=np.uint8)).kind == "tensor"  # not image-shaped
    assert encode(io.StringIO("hello")).kind == "text"
    with pytest.raises(ValueError, match="empty"):
        encode(b"")
    with pytest.raises(TypeError):
        encode(np.array(["a", "b"]))
    body = batch_body([encode(b"\x89PNGxx"), encode("hi"), encode([1.5])], top_k=3)
    assert body == b'{"instances":["iVBOR3h4","hi",[1.5]],"top_k":3}'
