"""The data plane: every operation of the API, transport-agnostic (as KServe's ``protocol/dataplane.py``).

A request arrives here as a :class:`Call` (path parameters, query, lower-case headers, body bytes) and
leaves as a :class:`Reply` (status, body, headers). The FastAPI routes (``_app.py``, on uvicorn and on
Lambda through Mangum) and ``Client.local`` (``onnxfn.client._transports.local``) both dispatch by the one
route table in ``_routes.py`` to :meth:`DataPlane.handle`; so decode → preprocess → infer → encode, model
metadata and readiness exist once. Operations raise ``APIError`` subclasses for bad input; each transport
turns them into its own error answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxfn._wire import HEADER

from ._batcher import Batcher, Job
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
        self._batchers: dict[Model, Batcher] = {}
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

    # -- inference ---------------------------------------------------------------------------------
    # predict and infer are Jobs (``_batcher.py``): prepare (parse, decode, preprocess) → run → finish
    # (encode). The HTTP server queues them on the model's runners; other callers run them in place.
    def infer(self, call: Call) -> Reply:
        """KServe V2 infer: JSON or binary tensors in, the same out."""
        return self.execute(self.infer_job(call))

    def predict(self, call: Call) -> Reply:
        """The friendly API: images, text or numeric rows in; top-k labels (or raw outputs) out."""
        return self.execute(self.predict_job(call))

    def job(self, op: str, call: Call) -> Job | None:
        """The model work of ``op`` as a :class:`Job` (``infer``, ``predict``), else None."""
        if op == "predict":
            return self.predict_job(call)
        if op == "infer":
            return self.infer_job(call)
        return None

    def infer_job(self, call: Call) -> Job:
        model = self._model(call)

        def prepare() -> tuple[dict[str, np.ndarray], list[str] | None, Any]:
            t0 = time.perf_counter()
            with span("onnxfn.decode", model=model.name):
                parsed = parse_request(call.body, call.headers.get(HEADER), model, self.settings.max_batch)
            call.timings["decode"] = (time.perf_counter() - t0) * 1000
            return parsed.inputs, parsed.outputs, parsed

        def finish(parsed: Any, results: dict[str, np.ndarray]) -> Reply:
            body, headers = encode_response(model, results, parsed)
            return Reply(200, body, headers, model.name)

        return Job(model, prepare, finish, call.timings)

    def predict_job(self, call: Call) -> Job:
        model = self._model(call, default_when_missing=True)
        name = model.outputs[0].name

        def prepare() -> tuple[dict[str, np.ndarray], list[str] | None, Any]:
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
            return predict_feeds(model, instances, call.timings), [name], top_k

        def finish(top_k: int | None, results: dict[str, np.ndarray]) -> Reply:
            return json_reply(predict_answer(model, results[name], top_k), model=model.name)

        return Job(model, prepare, finish, call.timings)

    def execute(self, job: Job) -> Reply:
        """Run ``job`` from a thread: through the model's batcher when batching is on, else in place."""
        fused = self.settings.batch_delay_ms > 0 and job.model.batchable
        answer: Reply = self.scheduler(job.model).run(job) if fused else job.execute()
        return answer

    def scheduler(self, model: Model) -> Batcher:
        """The job queue and runner threads of ``model`` (batching as the settings say)."""
        batcher = self._batchers.get(model)
        if batcher is None:
            with self._batchers_lock:
                batcher = self._batchers.get(model)
                if batcher is None:
                    self._retire_batchers()
                    settings = self.settings
                    batcher = Batcher(
                        model,
                        delay_ms=settings.batch_delay_ms,
                        max_rows=min(settings.batch_max, settings.max_batch),
                        timeout=settings.request_timeout,
                        fuse=settings.batch_delay_ms > 0,
                        runners=settings.runners,
                    )
                    self._batchers[model] = batcher
        return batcher

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
    def _retire_batchers(self) -> None:
        """Close the queues of models the repository no longer serves (hot reload): their runners end
        once idle and the old sessions are freed."""
        served = {id(m) for m in self.repository.models.values()}
        for model in [m for m in self._batchers if id(m) not in served]:
            self._batchers.pop(model).close()

    def batcher(self, model: Model) -> Batcher | None:
        """The job queue of ``model`` once one has started (metrics, tests)."""
        return self._batchers.get(model)

    def _model(self, call: Call, *, default_when_missing: bool = False) -> Model:
        name = call.params.get("name")
        if name is None and not default_when_missing:
            raise BadRequest("no model name in the path")
        model = self.repository.get(name, call.params.get("version"))
        call.model = model.name
        return model


def predict_feeds(
    model: Model, instances: list[Any], timings: dict[str, float] | None = None
) -> dict[str, np.ndarray]:
    """The model's feeds for predict ``instances`` (images decoded, text tokenized, rows checked)."""
    t0 = time.perf_counter()
    with span("onnxfn.preprocess", model=model.name, instances=len(instances)):
        if isinstance(model.preprocessor, ImagePreprocessor):
            instances = decode_image_instances(instances)
        feeds = model.feeds(instances)  # one batch per input; multi-input instances are keyed by input name
    if timings is not None:
        timings["preprocess"] = (time.perf_counter() - t0) * 1000
    return feeds


def predict_answer(model: Model, scores: np.ndarray, top_k: int | None) -> dict[str, Any]:
    """The predict answer from the first output's rows: top-k labels per instance, or raw outputs."""
    payload: dict[str, Any] = {"model": model.name, "version": model.version}
    if len(model.outputs) > 1:
        payload["output"] = model.outputs[0].name  # the friendly answer is the first output's (V2 has all)
    if model.task == "tensor":
        payload["outputs"] = np.asarray(scores).tolist()
    else:
        payload["predictions"] = model.classify(scores, top_k or 5)
    return payload


def predict_payload(
    model: Model, instances: list[Any], top_k: int | None, timings: dict[str, float] | None = None
) -> dict[str, Any]:
    """The predict answer for ``instances``, computed in this thread (no request around it)."""
    name = model.outputs[0].name
    feeds = predict_feeds(model, instances, timings)
    return predict_answer(model, model.run(feeds, [name])[name], top_k)
