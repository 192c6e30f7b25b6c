"""onnxfn: Keras → ONNX → fast CPU inference on AWS Lambda, a server, or the edge."""

# The one version source: the build reads it (pyproject.toml, dynamic version), `onnxfn --version` prints it,
# and the Lambda bundle, which ships this file without any dist-info, still has it.
__version__ = "0.1.0"
__all__ = ["__version__"]
