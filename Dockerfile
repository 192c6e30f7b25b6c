# onnxfn as a Lambda container image: for models too big for the 250 MB zip (images go up to 10 GB).
# The same runtime and serve dependencies as `onnxfn bundle`, installed for the image's own Python and
# architecture; see docs/deploy.md ("Container image").
#
#   docker build --platform linux/arm64 --build-arg MODEL_DIR=artifacts/demo/models -t onnxfn-lambda .
#   docker run --rm -p 9000:8080 onnxfn-lambda        # the Lambda Runtime Interface Emulator, locally
#
# MODEL_DIR holds NAME.onnx files and manifest.json (`onnxfn convert` writes both); the runtime verifies
# every sha256 before it serves. Handler: onnxfn.runtime.aws.handler (models load at init, once).
FROM public.ecr.aws/lambda/python:3.12

ARG MODEL_DIR=models

# Serve dependencies only: no TensorFlow, no converter, no uvicorn (Mangum is the server), no boto3 (the
# base image ships it; s3:// model sources import it lazily). The same ranges as pyproject's `serve` extra.
RUN pip install --no-cache-dir --target "${LAMBDA_TASK_ROOT}" \
        "onnxruntime>=1.17" "numpy>=1.26" "fastapi>=0.110" "mangum>=0.17" "pillow>=10" "python-multipart>=0.0.9" \
        "fastapi-offline>=1.7" \
    && rm -rf "${LAMBDA_TASK_ROOT}/bin"

# The runtime package only (the repo maps runtime/ to onnxfn.runtime), never the CLI, converter or client.
COPY onnxfn/__init__.py onnxfn/_wire.py ${LAMBDA_TASK_ROOT}/onnxfn/
COPY runtime/ ${LAMBDA_TASK_ROOT}/onnxfn/runtime/
COPY ${MODEL_DIR}/ ${LAMBDA_TASK_ROOT}/models/

# Unlike a zip, an image is built by the Python that runs it: compile bytecode now, so a cold start never
# compiles (the task root is read-only at run time). Then check, at build time, that the handler imports.
RUN python -m compileall -q -j 0 "${LAMBDA_TASK_ROOT}" \
    && test -f "${LAMBDA_TASK_ROOT}/models/manifest.json" \
    && ONNXFN_MODEL_DIR="${LAMBDA_TASK_ROOT}/models" python -c "import onnxfn.runtime.aws"

CMD ["onnxfn.runtime.aws.handler"]
