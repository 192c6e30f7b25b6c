"""``python -m onnxfn._bundle offline MODEL_DIR``: ``make offline`` (a local bundle, then serverless-offline)."""

import sys

from ._cli import main

sys.exit(main(sys.argv[1:]))
