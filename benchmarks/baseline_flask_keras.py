"""Baseline for the throughput benchmark: a seed-style Flask server calling Keras ``model.predict``.

Run: python benchmarks/baseline_flask_keras.py MODEL.keras PORT
"""

from __future__ import annotations

import io
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np
from flask import Flask, jsonify, request
from PIL import Image

model = keras.models.load_model(sys.argv[1], compile=False)
app = Flask(__name__)


@app.get("/v2/health/ready")
def ready():
    return jsonify({"ready": True})


@app.post("/predict")
def predict():
    pixels = np.asarray(
        Image.open(io.BytesIO(request.get_data())).convert("L").resize((8, 8)), dtype=np.float32
    )
    probs = model.predict((pixels / 255.0)[None, :, :, None], verbose=0)[0]
    order = np.argsort(-probs)[:5]
    return jsonify(
        {"predictions": [[{"label": str(i), "index": int(i), "score": float(probs[i])} for i in order]]}
    )


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
