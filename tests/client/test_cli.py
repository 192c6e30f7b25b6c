"""``onnxfn predict`` against a server and a local model: a table, JSON, exit status."""

from __future__ import annotations

import json
import subprocess
import sys

from onnxfn.cli import main

from .helpers import API_KEY


def _files(tmp_path, digit_pngs, n=3):
    paths = []
    for i in range(n):
        path = tmp_path / f"digit{i}.png"
        path.write_bytes(digit_pngs[i])
        paths.append(str(path))
    return paths


def test_predict_json_against_server(server, tmp_path, digit_pngs, expected, capsys):
    files = _files(tmp_path, digit_pngs)
    code = main(["predict", server, *files, "--api-key", API_KEY, "--json", "--top-k", "2"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["input"] for r in rows] == files
    assert [r["label"] for r in rows] == [p.label for p in expected[:3]]
    assert all(len(r["top_k"]) == 2 and r["request_id"] for r in rows)


def test_predict_table_local_model_and_failures(models_dir, tmp_path, digit_pngs, expected, capsys):
    files = _files(tmp_path, digit_pngs, 2)
    missing = str(tmp_path / "missing.png")
    code = main(["predict", str(models_dir / "digits.onnx"), *files, missing])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0].split() == ["input", "label", "score", "top-k"]
    assert out[1].split()[1] == expected[0].label and "ERROR" in out[3] and "FileNotFoundError" in out[3]


def test_predict_text_and_bad_target(models_dir, capsys):
    assert (
        main(["predict", str(models_dir), "--model", "words", "--text", "good movie", "bad", "--json"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert main(["predict", "nowhere.onnx", "x.png"]) == 2
    assert "neither" in capsys.readouterr().err


def test_predict_auth_error_is_reported(server, tmp_path, digit_pngs, capsys, monkeypatch):
    monkeypatch.delenv("ONNXFN_API_KEY", raising=False)
    files = _files(tmp_path, digit_pngs, 1)
    assert main(["predict", server, *files]) == 1
    assert "AuthenticationError" in capsys.readouterr().out


def test_entry_point(models_dir, tmp_path, digit_pngs):
    files = _files(tmp_path, digit_pngs, 1)
    exe = [sys.executable, "-m", "onnxfn"]
    out = subprocess.run(
        [*exe, "predict", str(models_dir), *files, "--json"], capture_output=True, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode()
    assert json.loads(out.stdout)[0]["model"] == "digits"
