"""Constants and helpers the client tests import (conftest.py holds the fixtures)."""

API_KEY = "onnxfn_test_key_0123456789"
