"""Constants and helpers the client tests import (conftest.py holds the fixtures)."""

import json

API_KEY = "onnxfn_test_key_0123456789"

OK_PREDICTION = json.dumps(
    {"model": "digits", "version": "1", "predictions": [[{"label": "7", "index": 7, "score": 0.9}]]}
).encode()
