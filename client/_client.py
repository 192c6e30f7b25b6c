"""``Client``: predictions from an onnxfn endpoint (or in process) that survive flaky networks.

The endpoints are thin: each drives a flow of ``_base.BaseClient`` (shared with ``AsyncClient``) with
blocking I/O over a transport (``requests`` over HTTP, or the runtime in process for ``Client.local``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ._auth import resolve_auth
from ._base import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT,
    BaseClient,
    Options,
    drive,
    env_api_key,
    resolve_url,
)
from ._batch import BatchRun, run_batch
from ._encode import encode
from ._retry import RetryPolicy
from ._transports import Transport
from ._types import BatchResult, Explanation, Prediction

__all__ = ["Client"]


class Client(BaseClient):
    """Calls an onnxfn endpoint: ``predict``, ``predict_batch``, ``explain``, ``infer``, ``metadata``, ``models``,
    ``health``.

    ``url`` (or ``ONNXFN_URL``) is the base URL, e.g. ``https://abc.execute-api.eu-west-1.amazonaws.com/prod``.
    ``api_key`` (or ``ONNXFN_API_KEY``) is sent as ``x-api-key``; ``auth`` is ``"sigv4"`` (AWS IAM),
    ``("bearer", TOKEN)``, or an auth callable (``APIKeyAuth``, ``BearerAuth``, ``SigV4Auth``, any
    ``requests`` auth). ``timeout`` bounds each attempt, ``deadline`` all attempts of one request;
    ``max_retries`` (or a full ``retry=RetryPolicy(...)``) says how often to retry 429/502/503/504
    (connection failures are retried until the deadline). ``model`` names the model to call (default: the
    server's default). ``max_concurrency`` sizes the connection pool and is ``predict_batch``'s default.
    ``headers`` are sent with every request (a ``traceparent`` there is the default trace context).

    Use it as a context manager (or call ``close()``) to release pooled connections.
    """

    _transport: Transport

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        auth: Any = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        deadline: float | None = DEFAULT_DEADLINE,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        session: Any = None,
        model: str | None = None,
        max_concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
    ) -> None:
        from ._transports.http import HTTPTransport

        url = resolve_url(url, "Client")
        transport = HTTPTransport(
            url,
            session=session,
            auth=resolve_auth(auth, url),
            pool_size=max(10, max_concurrency),
            verify=verify,
        )
        self._configure(
            transport,
            api_key=api_key if api_key is not None else env_api_key(),
            timeout=timeout,
            deadline=deadline,
            max_retries=max_retries,
            retry=retry,
            model=model,
            max_concurrency=max_concurrency,
            headers=headers,
        )

    @classmethod
    def local(
        cls,
        source: str | Path,
        *,
        model: str | None = None,
        threads: int | None = None,
        max_concurrency: int = 1,
    ) -> Client:
        """The same API in process over onnxruntime: no server, no network (edge devices, tests).

        ``source`` is an ``.onnx`` file or a model directory (its ``manifest.json`` sha256s are checked).
        Needs the runtime's dependencies (``pip install 'onnxfn[serve]'``), not FastAPI.
        """
        from ._transports.local import LocalTransport

        client = cls.__new__(cls)
        client._in_process(LocalTransport(source, default=model, threads=threads), model, max_concurrency)
        return client

    # -- lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release pooled connections (a session passed in by the caller is left open)."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints -------------------------------------------------------------------------------------
    def predict(
        self,
        x: Any,
        *,
        model: str | None = None,
        top_k: int = 5,
        timeout: float | None = None,
        deadline: float | None = None,
        traceparent: str | None = None,
    ) -> Prediction:
        """Classify one input: a path, ``pathlib.Path``, ``bytes``, a file object, a ``PIL.Image``, a numpy
        array (uint8 H×W[×C] is an image; other dtypes are a model-input tensor) or ``str`` text.

        ``timeout``/``deadline`` override the client's for this call; ``traceparent`` (W3C trace context)
        is forwarded to the server."""
        options = Options(timeout, deadline, traceparent)
        return drive(self._predict_flow([encode(x)], model, top_k, options), self._transport)[0]

    def predict_batch(
        self,
        xs: Iterable[Any],
        *,
        model: str | None = None,
        top_k: int = 5,
        batch_size: int = 32,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_concurrency: int | None = None,
        progress: bool = False,
        return_exceptions: bool = False,
        timeout: float | None = None,
        deadline: float | None = None,
        traceparent: str | None = None,
    ) -> BatchResult:
        """Classify many inputs: results in input order, requests split by count (``batch_size``) and by
        body size (``max_bytes``), up to ``max_concurrency`` requests in flight.

        An item that alone is larger than ``max_bytes`` fails before it is sent. With
        ``return_exceptions=True`` a failed item holds its exception and the others still succeed (a
        request the server rejects as bad is bisected to find the culprit); otherwise a ``BatchError`` is
        raised that keeps what finished (``.results``, by index) and what failed (``.errors``; the first
        failure is its ``__cause__``). A 413 from the server halves the batch size for the rest of the
        run. ``timeout``/``deadline`` apply to each request. ``progress`` shows a tqdm bar.
        """
        run = BatchRun(
            self,
            model=model,
            top_k=top_k,
            batch_size=batch_size,
            max_bytes=max_bytes,
            return_exceptions=return_exceptions,
            options=Options(timeout, deadline, traceparent),
        )
        concurrency = max(1, int(max_concurrency or self.max_concurrency))
        self._transport.ensure_pool(concurrency)
        return run_batch(run, xs, concurrency, progress, self._transport)

    def explain(
        self,
        x: Any,
        *,
        model: str | None = None,
        target: str | int | None = None,
        method: str | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        traceparent: str | None = None,
    ) -> Explanation:
        """Why the model answers what it does for one input (``:explain``): a heatmap and an overlay PNG for
        an image, word scores for text. Takes what ``predict`` takes (no tensors). ``target``: the class to
        explain (a label or an index; default the top class); ``method``: ``occlusion`` or ``rise``
        (images; default the server's)."""
        options = Options(timeout, deadline, traceparent)
        return drive(self._explain_flow(encode(x), model, target, method, options), self._transport)

    def infer(
        self,
        inputs: Mapping[str, Any] | np.ndarray,
        *,
        model: str | None = None,
        version: str | None = None,
        outputs: Iterable[str] | None = None,
        binary: bool = True,
        timeout: float | None = None,
        deadline: float | None = None,
        traceparent: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the model on raw tensors over KServe V2 (``/v2/models/{name}/infer``): inputs by name (a bare
        array goes to the first input), outputs by name. With ``binary`` (default) tensors travel as raw
        bytes (the binary-data extension, as Triton's clients send them), else as JSON."""
        options = Options(timeout, deadline, traceparent)
        return drive(self._infer_flow(inputs, model, version, outputs, binary, options), self._transport)

    def metadata(self, model: str | None = None, *, traceparent: str | None = None) -> dict[str, Any]:
        """KServe V2 model metadata: name, versions, inputs, outputs (+ onnxfn's task, labels, sha256)."""
        return drive(self._metadata_flow(model, Options(traceparent=traceparent)), self._transport)

    def models(self, *, traceparent: str | None = None) -> list[dict[str, Any]]:
        """The models the server has (onnxfn's ``/v1/models``; Triton's repository index as a fallback)."""
        return drive(self._models_flow(Options(traceparent=traceparent)), self._transport)

    def health(self, timeout: float = 5.0) -> bool:
        """True when the server is up and has a model loaded (``/v2/health/ready``); one attempt, never raises
        for a down or unready server."""
        return drive(self._health_flow(timeout), self._transport)
