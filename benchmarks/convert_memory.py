"""Peak resident memory of ``convert`` on one keras.applications model, per phase.

    python benchmarks/convert_memory.py ConvNeXtTiny        # ~30 s, ~2.5 GB
    /usr/bin/time -v python benchmarks/convert_memory.py ConvNeXtXLarge   # ~4 min, ~19 GB: alone on the machine

The model is built as ``bench_catalogue.py`` builds it (random weights, 32×32, 1000 classes, BN statistics
from 256 photos), then converted with the parity check on 8 images. A thread samples VmRSS every 50 ms
and charges it to the phase running (converter/_convert.py and tf2onnx functions, wrapped by name); the
process's VmHWM is the peak. Measured figures: docs/converter.md (**Memory**).
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "converter"))

_state: dict[str, Any] = {"phase": "start", "peaks": {}, "order": []}


def _status(key: str) -> float:
    """``key`` (VmRSS, VmHWM) of this process from /proc, in GB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1e6
    return 0.0


def _sample() -> None:
    while True:
        rss, phase = _status("VmRSS"), _state["phase"]
        if phase not in _state["peaks"]:
            _state["order"].append(phase)
        _state["peaks"][phase] = max(_state["peaks"].get(phase, 0.0), rss)
        time.sleep(0.05)


def _wrap(owner: Any, attr: str, phase: str) -> None:
    real = getattr(owner, attr)

    @functools.wraps(real)
    def inner(*args: Any, **kwargs: Any) -> Any:
        outer, _state["phase"] = _state["phase"], phase
        try:
            return real(*args, **kwargs)
        finally:
            _state["phase"] = outer

    setattr(owner, attr, inner)


def main(name: str) -> None:
    threading.Thread(target=_sample, daemon=True).start()
    _state["phase"] = "imports"
    import onnx
    import tf2onnx.graph
    from catalogue import build, inputs_for, min_size, real_images, realistic_batchnorm
    from onnxfn.converter import _convert, _lean, convert
    from tf2onnx import convert as t2c

    _state["phase"] = "build + BN statistics"
    size = min_size(name)
    model = build(name, size, classes=1000)
    realistic_batchnorm(model, name, size)
    sample = inputs_for(name, real_images(size, 8, seed=2))
    for owner, attr, phase in [
        (_convert, "_to_onnx", "trace + freeze + grappler"),
        (t2c, "process_tf_graph", "tf2onnx: TF graph → ONNX graph"),
        (_lean, "_optimize", "tf2onnx: ONNX optimizers"),
        (tf2onnx.graph.Graph, "make_model", "tf2onnx: ModelProto"),
        (_convert, "inline_external", "weights into the proto"),
        (onnx, "save", "onnx.save"),
        (_convert, "_parity", "parity"),
        (_convert, "float64_check", "float64 reference"),
    ]:
        _wrap(owner, attr, phase)
    _state["phase"] = "convert"
    started = time.perf_counter()
    out = Path("/tmp") / f"onnxfn-memory-{name}.onnx"
    report = convert(model, out, task="tensor", sample=sample)
    seconds = time.perf_counter() - started
    out.unlink(missing_ok=True)
    time.sleep(0.2)
    print(
        f"{name}: converted in {seconds:.0f} s, {report.size_bytes / 1e6:.0f} MB, parity {report.max_abs_diff:.1e}"
    )
    print(f"peak resident (VmHWM): {_status('VmHWM'):.2f} GB")
    for phase in _state["order"]:
        print(f"  {phase:60s} {_state['peaks'][phase]:6.2f} GB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ConvNeXtTiny")
