"""What ``Client`` and ``AsyncClient`` share: configuration, and every endpoint as a sans-I/O *flow*.

A flow is a generator that builds requests and reads answers but never touches the network: it yields
the retry policy's steps (``_retry.Send`` one attempt, ``_retry.Sleep``) and is sent each outcome.
``drive`` (here) runs a flow with blocking calls for ``Client``; ``_async.adrive`` runs the same flow
with ``await`` for ``AsyncClient``. So encoding, headers, the ``Idempotency-Key``, trace context,
retries, deadlines, answers and errors exist once. An endpoint is a few lines: a ``*_flow`` method here
plus a thin method on each client that drives it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import numpy as np

from ._encode import Encoded, batch_body
from ._exceptions import APIConnectionError, APIError, NotFoundError, request_id_of
from ._responses import invalid as _invalid
from ._responses import json_of, predictions_of
from ._retry import RetryPolicy, Sleep, Step, attempts
from ._trace import check_traceparent, inject_current
from ._transports import AsyncTransport, Request, Response, Transport
from ._types import Explanation, Prediction
from ._v2 import HEADER as INFER_HEADER
from ._v2 import decode_infer_response, encode_infer_request

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "BaseClient",
    "Flow",
    "Options",
    "T",
    "drive",
    "env_api_key",
    "resolve_url",
]

T = TypeVar("T")
Flow = Generator[Step, "Response | None", T]

DEFAULT_TIMEOUT = 30.0  # per attempt; API Gateway gives up at 29-30 s anyway
DEFAULT_DEADLINE = 90.0  # across all attempts of one request
DEFAULT_MAX_BYTES = 4_000_000  # Lambda's 6 MB sync payload holds ~4.4 MB of binary after base64


def user_agent() -> str:
    from onnxfn import __version__

    return f"onnxfn-client/{__version__}"


def env_api_key() -> str | None:
    """``$ONNXFN_API_KEY``, if set and not empty."""
    return os.environ.get("ONNXFN_API_KEY") or None


def resolve_url(url: str | None, cls: str) -> str:
    """``url`` or ``$ONNXFN_URL``, checked to be an HTTP(S) base URL."""
    url = url or os.environ.get("ONNXFN_URL")
    if not url:
        raise ValueError(f"no URL: pass {cls}(url) or set ONNXFN_URL (or use Client.local(path))")
    if not url.startswith(("http://", "https://")):
        raise ValueError(
            f"URL must start with http:// or https://, got {url!r} (for a model file: Client.local)"
        )
    return url


@dataclass(frozen=True)
class Options:
    """Per-call settings: None means the client's."""

    timeout: float | None = None
    deadline: float | None = None
    traceparent: str | None = None
    retry: RetryPolicy | None = None


def drive(flow: Flow[T], transport: Transport) -> T:
    """Run ``flow`` to its end with blocking I/O: send each attempt, sleep each wait."""
    value: Response | None = None
    error: APIConnectionError | None = None
    while True:
        try:
            step = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        value, error = None, None
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
        else:
            try:
                value = transport.send(step.request, step.timeout)
            except APIConnectionError as exc:
                error = exc


class BaseClient:
    """Configuration and the endpoint flows; see ``Client`` for the arguments."""

    _transport: Transport | AsyncTransport

    def _configure(
        self,
        transport: Transport | AsyncTransport,
        *,
        api_key: str | None,
        timeout: float | None,
        deadline: float | None,
        max_retries: int | None,
        retry: RetryPolicy | None,
        model: str | None,
        max_concurrency: int,
        headers: Mapping[str, str] | None,
    ) -> None:
        if max_retries is not None and retry is not None:
            raise TypeError("pass max_retries or retry, not both")
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive (or None for no limit)")
        if deadline is not None and deadline <= 0:
            raise ValueError("deadline must be positive (or None for no limit)")
        self._transport = transport
        self.url: str = transport.url
        self.retry: RetryPolicy = retry or RetryPolicy(max_retries=4 if max_retries is None else max_retries)
        self.timeout = timeout
        self.deadline = deadline
        self.model = model
        self.max_concurrency = max(1, int(max_concurrency))
        self._headers = {"user-agent": user_agent(), "accept": "application/json"}
        if api_key:
            self._headers["x-api-key"] = api_key
        for name, value in (headers or {}).items():
            self._headers[name.lower()] = value
        if "traceparent" in self._headers:
            self._headers["traceparent"] = check_traceparent(self._headers["traceparent"])
        self._default_model: str | None = None
        self._input_names: dict[str, str] = {}

    def _in_process(
        self, transport: Transport | AsyncTransport, model: str | None, max_concurrency: int
    ) -> None:
        """Configure over an in-process transport: no key, no retries, no timeouts."""
        self._configure(
            transport,
            api_key=None,
            timeout=None,
            deadline=None,
            max_retries=0,
            retry=None,
            model=model,
            max_concurrency=max_concurrency,
            headers=None,
        )

    def __repr__(self) -> str:
        model = f", model={self.model!r}" if self.model else ""
        return f"{type(self).__name__}({self.url!r}{model}, max_retries={self.retry.max_retries})"

    # -- one request, with retries ---------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        options: Options,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Flow[Response]:
        """One logical request: the same ``Idempotency-Key`` on every attempt, trace context, retries."""
        hdrs = dict(self._headers)
        hdrs["idempotency-key"] = os.urandom(16).hex()
        if content_type:
            hdrs["content-type"] = content_type
        if headers:
            hdrs.update({k.lower(): v for k, v in headers.items()})
        if options.traceparent is not None:
            hdrs["traceparent"] = check_traceparent(options.traceparent)
        elif "traceparent" not in hdrs:
            inject_current(hdrs)
        request = Request(method, path, params, hdrs, body)
        return (
            yield from attempts(
                request,
                policy=options.retry or self.retry,
                timeout=self.timeout if options.timeout is None else options.timeout,
                deadline=self.deadline if options.deadline is None else options.deadline,
                url=self._transport.url_for(request),
            )
        )

    # -- endpoints -------------------------------------------------------------------------------------
    def _predict_flow(
        self, items: list[Encoded], model: str | None, top_k: int, options: Options
    ) -> Flow[list[Prediction]]:
        name = model or self.model
        path = "/predict" if name is None else f"/v1/models/{quote(name, safe='')}:predict"
        if len(items) == 1 and items[0].kind == "image":
            body, content_type, params = items[0].data, "application/octet-stream", {"top_k": str(int(top_k))}
        else:
            body, content_type, params = batch_body(items, top_k), "application/json", None
        resp = yield from self._call(
            "POST", path, options, body=body, content_type=content_type, params=params
        )
        return predictions_of(resp, len(items))

    def _explain_flow(
        self,
        item: Encoded,
        model: str | None,
        target: str | int | None,
        method: str | None,
        options: Options,
    ) -> Flow[Explanation]:
        if item.kind == "tensor":
            raise TypeError("explain takes an image or a text, not a tensor")
        extra: dict[str, Any] = {}
        if target is not None:
            extra["target"] = target
        if method is not None:
            extra["method"] = method
        body = batch_body([item], None)  # {"instances":[...]}: the item's JSON, computed once
        if extra:
            body = body[:-1] + b"," + json.dumps(extra, separators=(",", ":"))[1:].encode()
        name = model or self.model
        path = "/explain" if name is None else f"/v1/models/{quote(name, safe='')}:explain"
        resp = yield from self._call("POST", path, options, body=body, content_type="application/json")
        data = json_of(resp)
        try:
            version = data.get("version")
            return Explanation.from_json(
                data["explanations"][0],
                model=data.get("model"),
                version=None if version is None else str(version),
                request_id=request_id_of(resp.headers),
            )
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise _invalid(resp, f"unreadable explain answer ({exc}): {resp.content[:200]!r}") from None

    def _infer_flow(
        self,
        inputs: Mapping[str, Any] | np.ndarray,
        model: str | None,
        version: str | None,
        outputs: Iterable[str] | None,
        binary: bool,
        options: Options,
    ) -> Flow[dict[str, np.ndarray]]:
        name = yield from self._model_name_flow(model, options)
        if not isinstance(inputs, Mapping):
            first = yield from self._first_input_flow(name, options)
            inputs = {first: inputs}
        body, header_length = encode_infer_request(
            inputs, list(outputs) if outputs is not None else None, binary=binary
        )
        path = f"/v2/models/{quote(name, safe='')}"
        if version is not None:
            path += f"/versions/{quote(str(version), safe='')}"
        resp = yield from self._call(
            "POST",
            path + "/infer",
            options,
            body=body,
            content_type="application/octet-stream" if header_length is not None else "application/json",
            headers={INFER_HEADER: str(header_length)} if header_length is not None else None,
        )
        raw_length = resp.headers.get(INFER_HEADER)
        try:
            _, tensors = decode_infer_response(resp.content, int(raw_length) if raw_length else None)
        except (ValueError, KeyError, TypeError) as exc:
            raise _invalid(resp, f"unreadable infer answer: {exc}", body=resp.content[:1000]) from None
        return tensors

    def _metadata_flow(self, model: str | None, options: Options) -> Flow[dict[str, Any]]:
        name = yield from self._model_name_flow(model, options)
        resp = yield from self._call("GET", f"/v2/models/{quote(name, safe='')}", options)
        data = json_of(resp)
        if not isinstance(data, dict):
            raise _invalid(resp, f"model metadata is not a JSON object: {resp.content[:200]!r}")
        return data

    def _models_flow(self, options: Options) -> Flow[list[dict[str, Any]]]:
        try:
            resp = yield from self._call("GET", "/v1/models", options)
        except NotFoundError:  # Triton and other V2 servers: the repository index
            resp = yield from self._call(
                "POST", "/v2/repository/index", options, body=b"{}", content_type="application/json"
            )
            data = json_of(resp)
            return data if isinstance(data, list) else []
        data = json_of(resp)
        if isinstance(data, dict):
            if data.get("default") is not None:
                self._default_model = data["default"]
            return list(data.get("models", []))
        return []

    def _health_flow(self, timeout: float) -> Flow[bool]:
        options = Options(timeout=timeout, deadline=timeout, retry=RetryPolicy(max_retries=0))
        try:
            yield from self._call("GET", "/v2/health/ready", options)
        except (APIError, APIConnectionError):
            return False
        return True

    def _model_name_flow(self, model: str | None, options: Options) -> Flow[str]:
        name = model or self.model or self._default_model
        if name is None:
            try:
                yield from self._models_flow(options)
            except NotFoundError:
                pass
            name = self._default_model
            if name is None:
                raise ValueError("which model? pass model=NAME (the server names no default model)")
        return name

    def _first_input_flow(self, model: str, options: Options) -> Flow[str]:
        if model not in self._input_names:
            metadata = yield from self._metadata_flow(model, options)
            inputs = metadata.get("inputs") or []
            if not inputs:
                raise ValueError(f"model {model!r} lists no inputs: pass inputs as {{name: array}}")
            self._input_names[model] = inputs[0]["name"]
        return self._input_names[model]
