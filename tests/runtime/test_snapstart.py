"""Lambda SnapStart hooks (``onnxfn.runtime.aws``): registered with snapshot_restore_py, optional without it.

A "restore" is a fork of the initialised process: like a SnapStart copy it starts with the parent's whole
memory, random generator states included. Each child runs the after-restore hooks, then a real HTTP API v2
predict event; the copies must answer and must not share their random sequences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

PROBE = """
import json, os, random, sys
sys.path.insert(0, {tests!r})
import numpy as np
from events import event, LambdaContext
from models import digit_png, digits_split
from snapshot_restore_py import get_after_restore, get_before_snapshot
from onnxfn.runtime import aws

hooks = {{"before": [f.__name__ for f, _, _ in get_before_snapshot()],
          "after": [f.__name__ for f, _, _ in get_after_restore()]}}
for func, args, kwargs in get_before_snapshot():  # what Lambda does before taking the snapshot
    func(*args, **kwargs)
png = digit_png(digits_split()[1][0])
copies = []
frozen = random.getstate()
for _ in range(2):  # two copies restored from the same snapshot
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        random.setstate(frozen)  # fork re-seeds `random` by itself; a SnapStart restore does not
        if {restore}:
            for func, args, kwargs in get_after_restore():
                func(*args, **kwargs)
        resp = aws.handler(event("http_api_v2", body=png), LambdaContext())
        out = {{"status": resp["statusCode"], "body": json.loads(resp["body"]),
               "random": random.random(), "numpy": float(np.random.random())}}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    copies.append(json.loads(data))
print(json.dumps({{"hooks": hooks, "copies": copies}}))
"""


def _run(digits_dir: Path, restore: bool) -> dict:
    env = {**os.environ, "ONNXFN_MODEL_DIR": str(digits_dir), "ONNXFN_LOG_LEVEL": "ERROR"}
    code = PROBE.format(tests=str(TESTS), restore=restore)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a restore is simulated with fork")
def test_restored_copies_answer_and_do_not_share_random_state(digits_dir, digits_data):
    pytest.importorskip("snapshot_restore_py")
    result = _run(digits_dir, restore=True)
    assert result["hooks"] == {"before": ["before_snapshot"], "after": ["after_restore"]}
    a, b = result["copies"]
    for copy in (a, b):
        assert copy["status"] == 200
        assert copy["body"]["model"] == "digits"
        assert copy["body"]["predictions"][0][0]["label"] == str(digits_data[3][0])  # y_test[0]
    assert a["random"] != b["random"] and a["numpy"] != b["numpy"]
    # Without the after-restore hook, the copies repeat each other: the hook is what makes them differ.
    frozen = _run(digits_dir, restore=False)["copies"]
    assert frozen[0]["random"] == frozen[1]["random"] and frozen[0]["numpy"] == frozen[1]["numpy"]


def test_the_handler_works_without_snapshot_restore_py(digits_dir):
    """Outside Lambda the package is absent: importing the handler must not need it."""
    code = (
        "import sys; sys.modules['snapshot_restore_py'] = None\n"  # makes the import fail
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from events import event, LambdaContext\n"
        "from onnxfn.runtime import aws\n"
        "aws.before_snapshot(); aws.after_restore()\n"
        "r = aws.handler(event('http_api_v2', method='GET', path='/v2/models/digits'), LambdaContext())\n"
        "print(r['statusCode'])\n"
        # FastAPI's OpenAPI models are built on first use on Lambda (aws._lean_fastapi): they still work
        "import json; d = aws.handler(event('http_api_v2', method='GET', path='/openapi.json'), LambdaContext())\n"
        "print(d['statusCode'], '/v2/models/{name}/infer' in json.loads(d['body'])['paths'])\n"
        "import pydantic.v1; print(pydantic.v1.BaseModel.__module__)"  # the real package, not the stand-in
    )
    env = {**os.environ, "ONNXFN_MODEL_DIR": str(digits_dir), "ONNXFN_LOG_LEVEL": "ERROR"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    printed = [word for line in lines if not line.startswith("{") for word in line.split()]
    assert printed == ["200", "200", "True", "pydantic.v1.main"]
    emf = [json.loads(line) for line in lines if line.startswith('{"_aws"')]  # one EMF line per invocation
    # before_snapshot's warm-up bypasses the EMF wrapper: the first real invocation is still the cold one
    assert [line["cold_start"] for line in emf] == [1, 0]
