"""``Client``: predictions from an onnxfn endpoint (or in process) that survive flaky networks."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from ._auth import APIKeyAuth, resolve_auth
from ._encode import Encoded, batch_body, batch_overhead, encode
from ._exceptions import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    NotFoundError,
    OnnxfnError,
    PayloadTooLargeError,
    error_from_response,
    request_id_of,
)
from ._retry import Deadline, RetryPolicy, parse_retry_after
from ._transports import Request, Response, Transport
from ._types import BatchResult, Prediction
from ._v2 import HEADER as INFER_HEADER
from ._v2 import decode_infer_response
from ._v2 import encode_infer_request as _encode_infer

log = logging.getLogger("onnxfn.client")

DEFAULT_TIMEOUT = 30.0  # per attempt; API Gateway gives up at 29-30 s anyway
DEFAULT_DEADLINE = 90.0  # across all attempts of one request
DEFAULT_MAX_BYTES = 4_000_000  # Lambda's 6 MB sync payload holds ~4.4 MB of binary after base64


def _version() -> str:
    try:
        from onnxfn import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "0"


class Client:
    """Calls an onnxfn endpoint: ``predict``, ``predict_batch``, ``infer``, ``metadata``, ``models``,
    ``health``.

    ``url`` (or ``ONNXFN_URL``) is the base URL, e.g. ``https://abc.execute-api.eu-west-1.amazonaws.com/prod``.
    ``api_key`` (or ``ONNXFN_API_KEY``) is sent as ``x-api-key``; ``auth`` is ``"sigv4"`` (AWS IAM),
    ``("bearer", TOKEN)``, or an auth callable (``APIKeyAuth``, ``BearerAuth``, ``SigV4Auth``, any
    ``requests`` auth). ``timeout`` bounds each attempt, ``deadline`` all attempts of one request;
    ``max_retries`` (or a full ``retry=RetryPolicy(...)``) says how often to retry 429/502/503/504,
    timeouts and connection errors. ``model`` names the model to call (default: the server's default).
    ``max_concurrency`` sizes the connection pool and is ``predict_batch``'s default.

    Use it as a context manager (or call ``close()``) to release pooled connections.
    """

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
        transport: Transport | None = None,
    ) -> None:
        if transport is None:
            url = url or os.environ.get("ONNXFN_URL")
            if not url:
                raise ValueError("no URL: pass Client(url) or set ONNXFN_URL (or use Client.local(path))")
            if not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"URL must start with http:// or https://, got {url!r} (for a model file: Client.local)"
                )
            from ._transports.http import HTTPTransport

            transport = HTTPTransport(
                url,
                session=session,
                auth=resolve_auth(auth, url),
                pool_size=max(10, max_concurrency),
                verify=verify,
            )
            if api_key is None:
                api_key = os.environ.get("ONNXFN_API_KEY") or None
        self._transport = transport
        self.url = transport.url
        if max_retries is not None and retry is not None:
            raise TypeError("pass max_retries or retry, not both")
        self.retry = retry or RetryPolicy(max_retries=4 if max_retries is None else max_retries)
        self.timeout = timeout
        self.deadline = deadline
        self.model = model
        self.max_concurrency = max(1, int(max_concurrency))
        self._headers = {"user-agent": f"onnxfn-client/{_version()}", "accept": "application/json"}
        if api_key:
            APIKeyAuth(api_key)(_HeaderTarget(self._headers))
        for name, value in (headers or {}).items():
            self._headers[name.lower()] = value
        self._default_model: str | None = None
        self._input_names: dict[str, str] = {}
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None for no limit)")
        if deadline is not None and deadline <= 0:
            raise ValueError("deadline must be positive (or None for no limit)")

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

        transport = LocalTransport(source, default=model, threads=threads)
        return cls(
            transport=transport,
            max_retries=0,
            model=model,
            timeout=None,
            deadline=None,
            max_concurrency=max_concurrency,
        )

    # -- lifecycle -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release pooled connections (a session passed in by the caller is left open)."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        model = f", model={self.model!r}" if self.model else ""
        return f"Client({self.url!r}{model}, max_retries={self.retry.max_retries})"

    # -- the request loop ------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> Response:
        """Send one logical request with retries; return the 2xx answer or raise the typed error.

        Every attempt carries the same ``Idempotency-Key``; ``timeout`` (default: the client's) bounds
        each attempt and is cut to what is left of ``deadline`` (default: the client's).
        """
        policy = retry or self.retry
        timeout = self.timeout if timeout is None else timeout
        clock = Deadline(self.deadline if deadline is None else deadline)
        key = os.urandom(16).hex()
        hdrs = dict(self._headers)
        hdrs["idempotency-key"] = key
        if content_type:
            hdrs["content-type"] = content_type
        if headers:
            hdrs.update({k.lower(): v for k, v in headers.items()})
        req = Request(method, path, params, hdrs, body)
        debug = log.isEnabledFor(logging.DEBUG)
        attempt = 0
        while True:
            attempt += 1
            left = clock.remaining()
            limit = (
                timeout if left == math.inf else max(0.001, left if timeout is None else min(timeout, left))
            )
            started = time.monotonic()
            error: OnnxfnError
            retry_after: float | None = None
            try:
                resp = self._transport.send(req, limit)
            except APIConnectionError as exc:
                exc.idempotency_key, exc.attempts = key, attempt
                error, retryable = exc, exc.retryable
            else:
                if resp.status < 400:
                    if debug:
                        self._log_attempt(req, attempt, policy, started, resp.status, key)
                    return resp
                retryable = resp.status in policy.statuses
                retry_after = parse_retry_after(resp.headers) if retryable else None
                error = error_from_response(
                    resp.status,
                    resp.headers,
                    resp.content,
                    method=method,
                    url=self._transport.url_for(req),
                    idempotency_key=key,
                    attempts=attempt,
                )
            if debug:
                self._log_attempt(req, attempt, policy, started, getattr(error, "status", None) or error, key)
            if not retryable:
                raise error
            if attempt > policy.max_retries:
                raise _exhausted(error, attempt, clock)
            if retry_after is not None:
                if retry_after > policy.max_retry_after:
                    raise _with_note(
                        error,
                        f"the server asked to retry after {retry_after:g} s, above the "
                        f"max_retry_after of {policy.max_retry_after:g} s",
                    )
                wait_for = policy.honoured_wait(retry_after)
            else:
                wait_for = policy.backoff(attempt - 1)
            if wait_for >= clock.remaining():
                raise _exhausted(error, attempt, clock)
            if debug:
                log.debug("retrying %s %s in %.3f s (idempotency-key %s)", method, path, wait_for, key)
            time.sleep(wait_for)

    def _log_attempt(
        self, req: Request, attempt: int, policy: RetryPolicy, started: float, outcome: Any, key: str
    ) -> None:
        ms = (time.monotonic() - started) * 1000
        what = outcome if isinstance(outcome, int) else f"{type(outcome).__name__}: {outcome}"
        log.debug(
            "%s %s attempt %d/%d -> %s in %.1f ms (idempotency-key %s)",
            req.method,
            self._transport.url_for(req),
            attempt,
            policy.max_retries + 1,
            what,
            ms,
            key,
        )

    def _json(self, resp: Response) -> Any:
        try:
            return json.loads(resp.content)
        except ValueError:
            raise InvalidResponseError(
                f"{resp.status} answer is not JSON: {resp.content[:200]!r}",
                status=resp.status,
                request_id=request_id_of(resp.headers),
                body=resp.content,
                headers=resp.headers,
            ) from None

    # -- predict ---------------------------------------------------------------------------------------
    def _predict_path(self, model: str | None) -> str:
        name = model or self.model
        return "/predict" if name is None else f"/v1/models/{quote(name, safe='')}:predict"

    def predict(
        self,
        x: Any,
        *,
        model: str | None = None,
        top_k: int = 5,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> Prediction:
        """Classify one input: a path, ``pathlib.Path``, ``bytes``, a file object, a ``PIL.Image``, a numpy
        array (uint8 H×W[×C] is an image; other dtypes are a model-input tensor) or ``str`` text."""
        return self._predict_items([encode(x)], model, top_k, timeout, deadline)[0]

    def _predict_items(
        self,
        items: list[Encoded],
        model: str | None,
        top_k: int,
        timeout: float | None,
        deadline: float | None,
    ) -> list[Prediction]:
        if len(items) == 1 and items[0].kind == "image":
            body, content_type, params = items[0].data, "application/octet-stream", {"top_k": str(int(top_k))}
        else:
            body, content_type, params = batch_body(items, top_k), "application/json", None
        resp = self.request(
            "POST",
            self._predict_path(model),
            body=body,
            content_type=content_type,
            params=params,
            timeout=timeout,
            deadline=deadline,
        )
        return self._predictions(resp, len(items))

    def _predictions(self, resp: Response, count: int) -> list[Prediction]:
        data = self._json(resp)
        request_id = request_id_of(resp.headers)
        model = data.get("model") if isinstance(data, dict) else None
        version = data.get("version") if isinstance(data, dict) else None
        version = None if version is None else str(version)
        rows = None
        if isinstance(data, dict):
            rows = data.get("predictions", data.get("outputs"))
        if not isinstance(rows, list) or len(rows) != count:
            raise InvalidResponseError(
                f"expected {count} predictions in the answer, got {resp.content[:200]!r}",
                status=resp.status,
                request_id=request_id,
                body=resp.content,
                headers=resp.headers,
            )
        if "predictions" in data:
            try:
                return [
                    Prediction.from_scores(r, model=model, version=version, request_id=request_id)
                    for r in rows
                ]
            except (KeyError, TypeError, ValueError) as exc:
                raise InvalidResponseError(
                    f"unreadable predictions ({exc}): {resp.content[:200]!r}",
                    status=resp.status,
                    request_id=request_id,
                    body=resp.content,
                    headers=resp.headers,
                ) from None
        return [
            Prediction(
                label=None,
                score=None,
                outputs=np.asarray(r),
                model=model,
                version=version,
                request_id=request_id,
            )
            for r in rows
        ]

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
    ) -> BatchResult:
        """Classify many inputs: results in input order, requests split by count (``batch_size``) and by
        body size (``max_bytes``), up to ``max_concurrency`` requests in flight.

        An item that alone is larger than ``max_bytes`` raises ``PayloadTooLargeError`` before it is sent.
        With ``return_exceptions=True`` a failed item holds its exception and the others still succeed
        (a request the server rejects as bad is bisected to find the culprit); otherwise the first failure
        is raised (with ``.index``, the item's position). A 413 from the server halves the batch size for
        the rest of the run. ``timeout``/``deadline`` apply to each request. ``progress`` shows a tqdm bar.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        started = time.monotonic()
        concurrency = max(1, int(max_concurrency or self.max_concurrency))
        self._transport.ensure_pool(concurrency)
        run = _BatchRun(self, model, top_k, batch_size, max_bytes, return_exceptions, timeout, deadline)
        total = len(xs) if hasattr(xs, "__len__") else None  # type: ignore[arg-type]
        bar = _progress_bar(total) if progress else None
        pending: set[Future] = set()
        executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="onnxfn-client")
        try:
            for chunk in run.chunks(xs):
                if run.failed:
                    break
                if chunk:
                    pending.add(executor.submit(run.send, chunk))
                if bar is not None:
                    bar.update(run.take_item_errors())
                while len(pending) >= 2 * concurrency:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    run.collect(done, bar)
            if run.failed:  # do not start what is queued; let what is in flight finish
                pending = {f for f in pending if not f.cancel()}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                run.collect(done, bar)
        finally:
            for future in pending:
                future.cancel()
            executor.shutdown(wait=True)
            if bar is not None:
                bar.close()
        if run.failed:
            raise run.first_failure()
        items = [run.results[i] for i in range(run.count)]
        return BatchResult(items, requests=run.requests, elapsed=time.monotonic() - started)

    # -- tensors (KServe V2) -----------------------------------------------------------------------------
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
    ) -> dict[str, np.ndarray]:
        """Run the model on raw tensors over KServe V2 (``/v2/models/{name}/infer``): inputs by name (a bare
        array goes to the first input), outputs by name. With ``binary`` (default) tensors travel as raw
        bytes (the binary-data extension, as Triton's clients send them), else as JSON."""
        name = self._model_name(model)
        if not isinstance(inputs, Mapping):
            inputs = {self._first_input(name): inputs}
        body, header_length = _encode_infer(
            inputs, list(outputs) if outputs is not None else None, binary=binary
        )
        headers = {INFER_HEADER: str(header_length)} if header_length is not None else None
        path = f"/v2/models/{quote(name, safe='')}"
        if version is not None:
            path += f"/versions/{quote(str(version), safe='')}"
        resp = self.request(
            "POST",
            path + "/infer",
            body=body,
            content_type="application/octet-stream" if header_length is not None else "application/json",
            headers=headers,
            timeout=timeout,
            deadline=deadline,
        )
        raw_length = resp.headers.get(INFER_HEADER)
        try:
            _, tensors = decode_infer_response(resp.content, int(raw_length) if raw_length else None)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidResponseError(
                f"unreadable infer answer: {exc}",
                status=resp.status,
                request_id=request_id_of(resp.headers),
                body=resp.content[:1000],
                headers=resp.headers,
            ) from None
        return tensors

    # -- metadata ------------------------------------------------------------------------------------------
    def metadata(self, model: str | None = None) -> dict[str, Any]:
        """KServe V2 model metadata: name, versions, inputs, outputs (+ onnxfn's task, labels, sha256)."""
        name = self._model_name(model)
        return self._json(self.request("GET", f"/v2/models/{quote(name, safe='')}"))

    def models(self) -> list[dict[str, Any]]:
        """The models the server has (onnxfn's ``/v1/models``; Triton's repository index as a fallback)."""
        try:
            data = self._json(self.request("GET", "/v1/models"))
        except NotFoundError:
            data = self._json(
                self.request("POST", "/v2/repository/index", body=b"{}", content_type="application/json")
            )
            return data if isinstance(data, list) else []
        if isinstance(data, dict):
            if data.get("default") is not None:
                self._default_model = data["default"]
            return list(data.get("models", []))
        return []

    def health(self, timeout: float = 5.0) -> bool:
        """True when the server is up and has a model loaded (``/v2/health/ready``); one attempt, never raises
        for a down or unready server."""
        try:
            self.request(
                "GET", "/v2/health/ready", timeout=timeout, deadline=timeout, retry=RetryPolicy(max_retries=0)
            )
        except (APIError, APIConnectionError):
            return False
        return True

    def _model_name(self, model: str | None) -> str:
        name = model or self.model or self._default_model
        if name is None:
            try:
                self.models()
            except NotFoundError:
                pass
            name = self._default_model
            if name is None:
                raise ValueError("which model? pass model=NAME (the server names no default model)")
        return name

    def _first_input(self, model: str) -> str:
        if model not in self._input_names:
            inputs = self.metadata(model).get("inputs") or []
            if not inputs:
                raise ValueError(f"model {model!r} lists no inputs: pass inputs as {{name: array}}")
            self._input_names[model] = inputs[0]["name"]
        return self._input_names[model]


class _HeaderTarget:
    """Lets an auth callable write into a plain dict of default headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = _LowerDict(headers)


class _LowerDict:
    def __init__(self, target: dict[str, str]) -> None:
        self.target = target

    def __setitem__(self, key: str, value: str) -> None:
        self.target[key.lower()] = value


def _with_note(error: OnnxfnError, note: str) -> OnnxfnError:
    error.args = (f"{error.args[0]}; {note}" if error.args else note,)
    if hasattr(error, "message"):
        error.message = error.args[0]
    return error


def _exhausted(error: OnnxfnError, attempts: int, clock: Deadline) -> OnnxfnError:
    """The error to raise when retries or time ran out, saying which."""
    out_of_time = clock.seconds is not None and clock.remaining() < clock.seconds
    if isinstance(error, APIError):
        if attempts > 1 and "attempts" not in error.message:
            _with_note(error, f"gave up after {attempts} attempts")
        return error
    why = f"{attempts} attempt{'s' if attempts > 1 else ''}"
    if out_of_time and clock.seconds is not None:
        why += f" within the {clock.seconds:g} s deadline"
    return _with_note(error, f"gave up after {why}")


def _progress_bar(total: int | None) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress=True needs tqdm: pip install tqdm") from None
    return tqdm(total=total, unit="item", desc="predict")


class _BatchRun:
    """The state of one ``predict_batch`` call: chunking, adaptive batch size, results, failures."""

    def __init__(
        self,
        client: Client,
        model: str | None,
        top_k: int,
        batch_size: int,
        max_bytes: int,
        return_exceptions: bool,
        timeout: float | None,
        deadline: float | None,
    ) -> None:
        self.client = client
        self.model = model
        self.top_k = top_k
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        self.return_exceptions = return_exceptions
        self.timeout = timeout
        self.deadline = deadline
        self.results: dict[int, Prediction | BaseException] = {}
        self.count = 0
        self.requests = 0
        self.failures: dict[int, BaseException] = {}
        self.fatal: BaseException | None = None  # wrong key or model: no point sending the rest
        self._item_errors = 0
        self._lock = threading.Lock()

    @property
    def failed(self) -> bool:
        return bool(self.failures) and not self.return_exceptions

    def first_failure(self) -> BaseException:
        return self.failures[min(self.failures)]

    def _fail(self, index: int, exc: BaseException) -> None:
        with self._lock:
            self.results[index] = exc
            self.failures.setdefault(index, exc)
            if getattr(exc, "index", None) is None:
                try:
                    exc.index = index  # type: ignore[attr-defined]
                except AttributeError:  # pragma: no cover - exceptions with __slots__
                    pass

    def take_item_errors(self) -> int:
        n, self._item_errors = self._item_errors, 0
        return n

    def chunks(self, xs: Iterable[Any]) -> Any:
        """Chunks of ``(index, Encoded)``, cut by count and bytes; items that cannot be sent fail here."""
        overhead = batch_overhead(self.top_k)
        chunk: list[tuple[int, Encoded]] = []
        size = overhead
        for index, x in enumerate(xs):
            self.count = index + 1
            try:
                item = encode(x)
                if item.size > self.max_bytes:
                    raise PayloadTooLargeError(
                        f"item {index}{f' ({item.name})' if item.name else ''} is {item.size:,} bytes, above "
                        f"max_bytes={self.max_bytes:,}: not sent (Lambda takes ~6 MB per request; "
                        "send a smaller image)",
                        status=None,
                    )
                piece = len(item.piece) + 1
            except (OSError, ValueError, TypeError, OnnxfnError) as exc:
                self._fail(index, exc)
                self._item_errors += 1
                yield []  # let the caller notice a failure early
                continue
            if chunk and (len(chunk) >= self.batch_size or size + piece > self.max_bytes):
                yield chunk
                chunk, size = [], overhead
            chunk.append((index, item))
            size += piece
        if chunk:
            yield chunk

    def send(self, chunk: list[tuple[int, Encoded]]) -> int:
        """Send one chunk (bisecting on 400/413) and store its results; returns the items it settled."""
        if self.fatal is not None or self.failed:
            for index, _ in chunk:
                if self.fatal is not None:
                    self._fail(index, self.fatal)
            return len(chunk)
        try:
            predictions = self.client._predict_items(
                [item for _, item in chunk], self.model, self.top_k, self.timeout, self.deadline
            )
        except (BadRequestError, PayloadTooLargeError) as exc:
            with self._lock:
                self.requests += 1
                if isinstance(exc, PayloadTooLargeError) and len(chunk) > 1:
                    self.batch_size = max(1, min(self.batch_size, len(chunk) // 2))
            if len(chunk) == 1:
                self._fail(chunk[0][0], exc)
                return 1
            half = len(chunk) // 2
            settled = self.send(chunk[:half])
            if not self.failed:
                settled += self.send(chunk[half:])
            return settled if self.return_exceptions else len(chunk)
        except OnnxfnError as exc:
            with self._lock:
                self.requests += 1
                if isinstance(exc, (AuthenticationError, NotFoundError)):
                    self.fatal = exc
            for index, _ in chunk:
                self._fail(index, exc)
            return len(chunk)
        with self._lock:
            self.requests += 1
            for (index, _), prediction in zip(chunk, predictions, strict=True):
                self.results[index] = prediction
        return len(chunk)

    def collect(self, done: set[Future], bar: Any) -> None:
        for future in done:
            if future.cancelled():
                continue
            settled = future.result()  # a bug (not an OnnxfnError) propagates
            if bar is not None:
                bar.update(settled)
