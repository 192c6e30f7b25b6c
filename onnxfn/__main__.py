import sys

from onnxfn.cli import main

sys.exit(main())
