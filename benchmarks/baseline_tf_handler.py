"""Baseline for the cold-start benchmark: a Lambda handler as the seeds write it — TensorFlow/Keras loads
the model at import and ``model.predict`` answers. Same event, same PNG decoding, same answer."""

from __future__ import annotations

import base64
import io
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np
from PIL import Image

MODEL = keras.models.load_model(os.environ["BASELINE_KERAS_MODEL"], compile=False)


def handler(event: dict, context: object) -> dict:
    body = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"].encode()
    pixels = np.asarray(Image.open(io.BytesIO(body)).convert("L").resize((8, 8)), dtype=np.float32) / 255.0
    probs = MODEL.predict(pixels[None, :, :, None], verbose=0)[0]
    order = np.argsort(-probs)[:5]
    predictions = [[{"label": str(i), "index": int(i), "score": float(probs[i])} for i in order]]
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"predictions": predictions}),
    }
