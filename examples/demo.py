"""onnxfn end to end on real data, in about a minute: `make demo`.

1. trains a small Keras CNN on sklearn's digits (8x8 greyscale, shipped with scikit-learn),
2. converts it to ONNX (parity-checked against Keras) and quantizes it,
3. serves it with `onnxfn serve` on 127.0.0.1,
4. sends every held-out test image as PNG bytes with `onnxfn.client.Client.predict`,
5. prints accuracy and latency, and stops the server.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def load_data(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    return train_test_split(
        digits.images.astype("float32"),
        digits.target,
        test_size=0.25,
        random_state=seed,
        stratify=digits.target,
    )


def train(x_train: np.ndarray, y_train: np.ndarray, epochs: int):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="pixels"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train[..., None] / 16.0, y_train, epochs=epochs, batch_size=32, verbose=0)
    return model


def png_bytes(image_0_16: np.ndarray) -> bytes:
    from PIL import Image

    pixels = np.clip(np.rint(image_0_16 * 255 / 16), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "artifacts" / "demo"), help="where models and results go")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    out = Path(args.out)
    models = out / "models"
    models.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}

    step("data: sklearn digits (1,797 real 8x8 handwritten digits), 75/25 stratified split")
    x_train, x_test, y_train, y_test = load_data()
    print(f"    train {len(x_train)}, held-out test {len(x_test)}")

    step(f"train a Keras CNN ({args.epochs} epochs)")
    t0 = time.perf_counter()
    model = train(x_train, y_train, args.epochs)
    keras_acc = float(
        np.mean(np.argmax(model.predict(x_test[..., None] / 16.0, verbose=0), axis=1) == y_test)
    )
    results["keras_accuracy"] = keras_acc
    print(f"    trained in {time.perf_counter() - t0:.1f} s; Keras held-out accuracy {keras_acc:.2%}")

    step("convert to ONNX (dynamic batch, parity check against Keras)")
    from onnxfn.converter import convert

    # The CNN trained on digits/16 (0..1); a PNG pixel is digit*255/16, so the default preprocessing
    # (pixel/255, greyscale from the 1-channel input) reproduces the training input exactly.
    report = convert(
        model, models / "digits.onnx", labels=[str(i) for i in range(10)], sample=x_test[..., None] / 16.0
    )
    print("    " + report.summary().replace("\n", "\n    "))
    results["parity_max_abs_diff"] = report.max_abs_diff

    try:
        from onnxfn.converter import quantize
    except ImportError:
        quantize = None
    if quantize is not None:
        step("quantize: static int8 (QDQ, per-channel), calibrated on training images")
        qreport = quantize(
            models / "digits.onnx",
            models / "digits_int8.onnx",
            mode="static",
            calibration=(x_train[:256, :, :, None] / 16.0).astype("float32"),
            eval_data=((x_test[..., None] / 16.0).astype("float32"), y_test),
        )
        print("    " + qreport.summary().replace("\n", "\n    "))

    step("serve with `onnxfn serve` on 127.0.0.1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onnxfn",
            "serve",
            str(models),
            "--port",
            str(port),
            "--default-model",
            "digits",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from onnxfn.client import Client

        with Client(url, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.health():
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start: run `onnxfn serve` by hand to see why")
                time.sleep(0.1)
            print(f"    ready at {url}; models: {', '.join(m['name'] for m in client.models())}")

            step(f"predict {len(x_test)} held-out images, one PNG per request, with onnxfn.client")
            pngs = [png_bytes(img) for img in x_test]
            latencies, correct = [], 0
            for data, label in zip(pngs, y_test, strict=True):
                t0 = time.perf_counter()
                prediction = client.predict(data)
                latencies.append((time.perf_counter() - t0) * 1000)
                correct += prediction.label == str(label)
            accuracy = correct / len(y_test)
            lat = np.array(latencies)
            print(f"    served accuracy {accuracy:.2%} ({correct}/{len(y_test)})")
            print(
                f"    latency per request: p50 {np.median(lat):.2f} ms, p95 {np.percentile(lat, 95):.2f} ms"
            )
            print(f"    example: {prediction!r}")
            results.update(
                served_accuracy=accuracy,
                latency_p50_ms=float(np.median(lat)),
                latency_p95_ms=float(np.percentile(lat, 95)),
            )

            if (models / "digits_int8.onnx").exists():
                t0 = time.perf_counter()
                batch = client.predict_batch(pngs, model="digits_int8", batch_size=64)
                took = time.perf_counter() - t0
                int8_acc = float(np.mean([p.label == str(y) for p, y in zip(batch, y_test, strict=True)]))
                print(
                    f"    int8 model via predict_batch: accuracy {int8_acc:.2%}, {len(pngs) / took:.0f} images/s"
                )
                results["int8_served_accuracy"] = int8_acc
    finally:
        step("stop the server")
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        print("    stopped")

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    ok = results.get("served_accuracy", 0) >= 0.90
    print(
        f"\n{'OK' if ok else 'FAILED'}: held-out accuracy through the server {results.get('served_accuracy', 0):.2%}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
