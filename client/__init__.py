"""onnxfn.client: call an onnxfn endpoint (or a model in process) from Python, blocking or with asyncio.

```python
from onnxfn.client import Client, AsyncClient
with Client("https://…/prod", api_key="…") as client:     # or ONNXFN_URL / ONNXFN_API_KEY
    p = client.predict("cat.jpg")                           # Prediction(label=…, score=…, top_k=[…])
    ps = client.predict_batch(paths, batch_size=32, max_concurrency=4)
    y = client.infer({"input": array})                      # KServe V2, binary tensors
    e = client.explain("cat.jpg")                           # e.label, e.heatmap (numpy), e.overlay (PNG)
local = Client.local("model.onnx")                          # same API, in process (edge)

async with AsyncClient("https://…/prod", api_key="…") as client:
    p = await client.predict("cat.jpg")                     # the same methods, arguments and errors
```

Light to import: numpy only; ``requests`` loads with the first ``Client``, ``aiohttp`` with the first
``AsyncClient``, onnxruntime with ``Client.local``. Never imports FastAPI or TensorFlow.
"""

from ._async import AsyncClient
from ._auth import APIKeyAuth, BearerAuth, SigV4Auth
from ._client import Client
from ._exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchError,
    InvalidResponseError,
    NotFoundError,
    OnnxfnError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from ._retry import RetryPolicy
from ._types import BatchResult, Explanation, Label, Prediction

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIKeyAuth",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchError",
    "BatchResult",
    "BearerAuth",
    "Client",
    "Explanation",
    "InvalidResponseError",
    "Label",
    "NotFoundError",
    "OnnxfnError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Prediction",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "SigV4Auth",
]
