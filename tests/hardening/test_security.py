"""Security properties: keys and payloads never reach the logs; key checks are constant-time."""

from __future__ import annotations

import hmac
import json
import signal

import pytest
import requests
from models import digit_png, topics_bow
from onnxfn.runtime import write_manifest
from onnxfn.runtime._auth import authorized, hash_key
from servers import onnxfn_serve

SECRET = "sk-very-secret-key-0123456789"
SECRET_TEXT = "confidential patient rain storm forecast 4242"


@pytest.mark.slow
def test_keys_and_payloads_never_logged(tmp_path, digits_model, digits_data):
    (tmp_path / "digits.onnx").write_bytes(digits_model.read_bytes())
    topics_bow(tmp_path / "topics.onnx")
    write_manifest(tmp_path)
    png = digit_png(digits_data[1][0])
    env = {"ONNXFN_API_KEY_HASHES": hash_key(SECRET), "ONNXFN_LOG_LEVEL": "DEBUG"}
    with onnxfn_serve(tmp_path, "--log-level", "debug", env=env) as (url, proc):
        ok = requests.post(
            f"{url}/predict", data=png, headers={"content-type": "image/png", "x-api-key": SECRET}
        )
        assert ok.status_code == 200
        for headers in (
            {"x-api-key": SECRET + "x"},
            {"authorization": f"Bearer {SECRET}"},
            {"x-api-key": SECRET[:-1]},
        ):
            requests.post(
                f"{url}/v1/models/topics:predict", json={"instances": [SECRET_TEXT]}, headers=headers
            )
        requests.post(
            f"{url}/v1/models/topics:predict",
            json={"instances": [SECRET_TEXT, 5]},
            headers={"x-api-key": SECRET},
        )
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        logs = proc.stdout.read().decode()
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    sent = [r for r in records if r.get("event") == "request" and r["path"] != "/v2/health/ready"]
    assert len(sent) == 5  # every request is logged ...
    assert SECRET not in logs and SECRET[:-1] not in logs and hash_key(SECRET) not in logs  # ... no key
    assert SECRET_TEXT not in logs and "confidential" not in logs  # ... and no payload
    assert all(not {"body", "headers", "authorization", "x-api-key"} & set(record) for record in records)


def test_key_check_compares_every_hash_in_constant_time(monkeypatch):
    hashes = tuple(hash_key(k) for k in ("a", "b", "c", "d"))
    calls = []
    real = hmac.compare_digest

    def counting(x, y):
        calls.append(1)
        return real(x, y)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for key, expected in (("a", True), ("d", True), ("zzz", False)):
        calls.clear()
        assert authorized(key, hashes) is expected
        assert len(calls) == len(hashes)  # no early exit on the first match: position does not leak
    calls.clear()
    assert authorized(None, hashes) is False and authorized("", hashes) is False
