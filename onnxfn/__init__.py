"""onnxfn: Keras → ONNX → fast CPU inference on AWS Lambda, a server, or the edge."""

__version__ = "0.1.0"
__all__ = ["__version__"]
