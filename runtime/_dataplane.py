"""The data plane: every operation of the API, transport-agnostic (as KServe's ``protocol/dataplane.py``).

A request arrives here as a :class:`Call` (path parameters, query, lower-case headers, body bytes) and
leaves as a :class:`Reply` (status, body, headers). The FastAPI routes (``_app.py``, on uvicorn and on
Lambda through Mangum) and ``Client.local`` (``onnxfn.client._transports.local``) both dispatch by the one
route table in ``_routes.py`` to :meth:`DataPlane.handle`; so decode → preprocess → infer → encode, model
metadata and readiness exist once. Operations raise ``APIError`` subclasses for bad input; each transport
turns them into its own error answer.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxfn._wire import HEADER

from ._batcher import Batcher, Direct
from ._bodies import decode_image_instances, media_type, parse_body, parse_top_k
from ._errors import BadRequest, NotFound, UnsupportedMediaType
from ._explain import ExplainSettings, check_options, explain_options, explain_payload
from ._image import ImagePreprocessor
from ._model import Model
from ._repository import ModelRepository
from ._settings import Settings
from ._tensors import check_batch
from ._tracing import span
from ._v2 import encode_response, parse_request

__all__ = ["Call", "DataPlane", "Reply", "json_reply"]


@dataclass
class Call:
    """One request, as any transport hands it over. ``headers`` have lower-case names.

    ``instances`` is set instead of ``body`` by transports that parse a body themselves (multipart).
    ``timings`` collects Server-Timing phases in milliseconds.
    """

    params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    instances: list[Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    model: str | None = None  # set once the request's model is resolved (for logs and metrics)


@dataclass
class Reply:
    """One answer. ``model`` names the model that served it (for logs and metrics)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    model: str | None = None


def json_reply(payload: Any, status: int = 200, *, model: str | None = None) -> Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Reply(status, body, {"content-type": "application/json"}, model)


class DataPlane:
    """The operations over a :class:`ModelRepository`. Operation names are the ``op`` of ``_routes.ROUTES``."""

    def __init__(self, repository: ModelRepository, settings: Settings | None = None) -> None:
        self.repository = repository
        self.settings = settings or Settings()
        self.explain_settings = ExplainSettings.from_env()
        self.metrics: Any = None  # runtime._metrics.Metrics when the app turned metrics on
        self.draining = False  # set on SIGTERM by `onnxfn serve`: readiness answers 503 from then on
        self._ops: dict[str, Callable[[Call], Reply]] = {
            "live": self.live,
            "ready": self.ready,
            "server_metadata": self.server_metadata,
            "list_models": self.list_models,
            "model_metadata": self.model_metadata,
            "model_ready": self.model_ready,
            "infer": self.infer,
            "predict": self.predict,
            "explain": self.explain,
            "metrics": self.metrics_page,
        }
        self._batchers: weakref.WeakKeyDictionary[Model, Batcher] = weakref.WeakKeyDictionary()
        self._batchers_lock = threading.Lock()

    def handle(self, op: str, call: Call) -> Reply:
        """Run operation ``op`` on ``call``. Blocking for inference: REST runs it in a worker thread."""
        return self._ops[op](call)

    # -- health and metadata ---------------------------------------------------------------------
    def live(self, call: Call) -> Reply:
        return json_reply({"live": True})

    def ready(self, call: Call) -> Reply:
        if self.draining:
            return json_reply({"ready": False, "reason": "shutting down"}, 503)
        ok = len(self.repository) > 0
        return json_reply({"ready": ok}, 200 if ok else 503)

    def metrics_page(self, call: Call) -> Reply:
        """Prometheus exposition (``runtime/_metrics.py``); 404 where metrics are off (Lambda, ``Client.local``)."""
        if self.metrics is None:
            raise NotFound(
                "metrics are off here (ONNXFN_METRICS=false; on AWS Lambda each invocation writes a "
                "CloudWatch EMF line to the log instead)"
            )
        body, content_type = self.metrics.render()
        return Reply(200, body, {"content-type": content_type})

    def server_metadata(self, call: Call) -> Reply:
        from onnxfn import __version__

        return json_reply({"name": "onnxfn", "version": __version__, "extensions": ["binary_tensor_data"]})

    def list_models(self, call: Call) -> Reply:
        models = [
            {"name": m.name, "version": m.version, "task": m.task, "labels": m.labels}
            for m in self.repository.models.values()
        ]
        return json_reply({"default": self.repository.default, "models": models})

    def model_metadata(self, call: Call) -> Reply:
        model = self._model(call)
        return json_reply(model.describe(), model=model.name)

    def model_ready(self, call: Call) -> Reply:
        model = self._model(call)
        return json_reply({"name": model.name, "ready": True}, model=model.name)

    # -- inference --------------------------------------------------------------------------------
    def infer(self, call: Call) -> Reply:
        """KServe V2 infer: JSON or binary tensors in, the same out."""
        model = self._model(call)
        with self._runner(model) as runner:
            t0 = time.perf_counter()
            with span("onnxfn.decode", model=model.name):
                parsed = parse_request(call.body, call.headers.get(HEADER), model, self.settings.max_batch)
            t1 = time.perf_counter()
            results = runner.run(parsed.inputs, parsed.outputs)
            t2 = time.perf_counter()
        body, headers = encode_response(model, results, parsed)
        call.timings["decode"] = (t1 - t0) * 1000
        call.timings["inference"] = (t2 - t1) * 1000
        return Reply(200, body, headers, model.name)

    def predict(self, call: Call) -> Reply:
        """The friendly API: images, text or numeric rows in; top-k labels (or raw outputs) out."""
        model = self._model(call, default_when_missing=True)
        with self._runner(model) as runner:
            t0 = time.perf_counter()
            if call.instances is not None:
                instances, top_k = call.instances, None
            else:
                content_type = media_type(call.headers.get("content-type", ""))
                if content_type.startswith("multipart/form-data"):
                    raise UnsupportedMediaType(
                        "multipart bodies are read by the HTTP server only: send image bytes or JSON instances"
                    )
                with span("onnxfn.decode", model=model.name):
                    instances, top_k = parse_body(content_type, call.body)
            check_batch(len(instances), self.settings.max_batch)
            top_k = parse_top_k(call.query.get("top_k"), top_k)
            call.timings["decode"] = (time.perf_counter() - t0) * 1000
            payload = predict_payload(model, instances, top_k, call.timings, run=runner.run)
        return json_reply(payload, model=model.name)

    def explain(self, call: Call) -> Reply:
        """Which pixels or words the answer rests on (``_explain.py``): the predict bodies, plus ``target``
        and ``method`` in JSON or the query string."""
        model = self._model(call, default_when_missing=True)
        t0 = time.perf_counter()
        target: str | int | None = call.query.get("target")
        method: str | None = call.query.get("method")
        if call.instances is not None:
            instances = call.instances
        else:
            content_type = media_type(call.headers.get("content-type", ""))
            if content_type.startswith("multipart/form-data"):
                raise UnsupportedMediaType(
                    "multipart bodies are read by the HTTP server only: send image bytes or JSON instances"
                )
            instances, _ = parse_body(content_type, call.body)
            target, method = explain_options(content_type, call.body, call.query)
        check_options(model, target, method, self.explain_settings)
        check_batch(len(instances), self.settings.max_batch)
        call.timings["decode"] = (time.perf_counter() - t0) * 1000
        payload = explain_payload(model, instances, target, method, self.explain_settings, call.timings)
        return json_reply(payload, model=model.name)

    # -- helpers ----------------------------------------------------------------------------------
    def _runner(self, model: Model) -> contextlib.AbstractContextManager[Any]:
        """How this request runs the model: through its batcher (ONNXFN_BATCH_DELAY_MS > 0), else directly."""
        settings = self.settings
        if settings.batch_delay_ms <= 0 or not model.batchable:
            return contextlib.nullcontext(Direct(model))
        batcher = self._batchers.get(model)
        if batcher is None:
            with self._batchers_lock:
                batcher = self._batchers.get(model)
                if batcher is None:
                    batcher = Batcher(
                        model,
                        delay_ms=settings.batch_delay_ms,
                        max_rows=min(settings.batch_max, settings.max_batch),
                        timeout=settings.request_timeout,
                    )
                    self._batchers[model] = batcher
        return batcher.arrival()

    def batcher(self, model: Model) -> Batcher | None:
        """The batcher of ``model`` once batching has started for it (metrics, tests)."""
        return self._batchers.get(model)

    def _model(self, call: Call, *, default_when_missing: bool = False) -> Model:
        name = call.params.get("name")
        if name is None and not default_when_missing:
            raise BadRequest("no model name in the path")
        model = self.repository.get(name, call.params.get("version"))
        call.model = model.name
        return model


def predict_payload(
    model: Model,
    instances: list[Any],
    top_k: int | None,
    timings: dict[str, float] | None = None,
    *,
    run: Callable[..., dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """The predict answer for ``instances``: top-k labels per instance, or raw outputs for tensor models.

    ``run`` runs the model (default ``model.run``); the data plane passes its batcher's.
    """
    timings = timings if timings is not None else {}
    t0 = time.perf_counter()
    with span("onnxfn.preprocess", model=model.name, instances=len(instances)):
        if isinstance(model.preprocessor, ImagePreprocessor):
            instances = decode_image_instances(instances)
        feeds = model.feeds(instances)  # one batch per input; multi-input instances are keyed by input name
    t1 = time.perf_counter()
    name = model.outputs[0].name
    scores = (run or model.run)(feeds, [name])[name]
    t2 = time.perf_counter()
    timings["preprocess"] = (t1 - t0) * 1000
    timings["inference"] = (t2 - t1) * 1000
    payload: dict[str, Any] = {"model": model.name, "version": model.version}
    if len(model.outputs) > 1:
        payload["output"] = name  # several outputs: the friendly answer is the first one's (V2 has all)
    if model.task == "tensor":
        payload["outputs"] = np.asarray(scores).tolist()
    else:
        payload["predictions"] = model.classify(scores, top_k or 5)
    return payload
