"""The API routes over HTTP: a pure-ASGI dispatcher from ``_routes.py`` to the data plane (``_dataplane.py``).

A request for a route of the table becomes a :class:`Call`, runs (blocking operations in a worker thread,
within the request timeout) and its :class:`Reply` is written back; any other request (the playground,
``/docs``, ``/openapi.json``, 404 and 405) goes on to ``fallback``, the FastAPI app. Errors are raised as
``APIError``; ``RequestMiddleware`` around this turns them into JSON answers with the request id.

Why not FastAPI endpoints: the API's bodies are parsed by hand anyway (``_bodies.py``, ``_v2.py``), and
FastAPI's per-request machinery (its middleware stack, router, dependency solving and Request/Response
objects) cost ~0.2 ms of CPU per request here, a fifth of a small model's inference
(benchmarks/batching.md). ``Client.local`` dispatches the same way: ``match`` → ``Call`` → ``DataPlane``.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.datastructures import QueryParams

from ._bodies import media_type
from ._dataplane import Call, DataPlane, Reply
from ._errors import BadRequest, MethodNotAllowed, NotReady
from ._routes import ROUTES, Route
from ._settings import Settings

__all__ = ["Dispatch", "allowed", "run_op"]

ASGIApp = Any


class Dispatch:
    """Routes of ``_routes.ROUTES`` → :meth:`DataPlane.handle`; everything else → ``fallback``.

    Runs inside ``RequestMiddleware``, which matches the route (``scope["state"]["route"]``, HEAD as GET)
    and reads the headers (``scope["state"]["headers"]``) once for both."""

    def __init__(self, dataplane: DataPlane, settings: Settings, fallback: ASGIApp) -> None:
        self.dataplane = dataplane
        self.settings = settings
        self.fallback = fallback

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        state = scope["state"]  # RequestMiddleware, around this, matched the route and read the headers
        route, params = state["route"]
        headers = state["headers"]
        if route is None or not isinstance(params, dict):
            if params:  # an API path with another method
                raise MethodNotAllowed(
                    f"method {scope['method']} is not allowed on {scope['path']}",
                    headers={"allow": ", ".join(allowed(scope["path"]))},
                )
            await self.fallback(scope, receive, send)
            return
        call = Call(
            params=params,
            query=QueryParams(scope.get("query_string", b"")),
            headers=headers,
            timings=state.setdefault("timings", {}),
        )
        if route.method == "POST":
            if route.op in ("predict", "explain") and media_type(headers.get("content-type", "")).startswith(
                "multipart/form-data"
            ):
                call.instances = await _multipart(scope, receive, self.settings.max_batch)
            else:
                call.body = await _body(receive)
        try:
            reply = await run_op(self.dataplane, route, call, self.settings)
        finally:
            if call.model:  # also for errors: a loaded model's name (bounded), never a name a client sent
                state["model"] = call.model
        await _send_reply(send, reply, head=scope["method"] == "HEAD")  # HEAD: a GET without the body


def allowed(path: str) -> list[str]:
    """The methods the route table has for ``path``."""
    methods = {r.method for r in ROUTES if r.regex.match(path)}
    return sorted(methods | {"HEAD"} if "GET" in methods else methods)


async def run_op(dataplane: DataPlane, route: Route, call: Call, settings: Settings) -> Reply:
    """Model work on the model's runner threads (``_batcher.py``); other blocking operations (explain)
    in a worker thread; both within the request timeout. Without ``offload`` (Lambda), in place."""
    if not route.blocking or not settings.offload:
        return dataplane.handle(route.op, call)
    job = dataplane.job(route.op, call)
    if job is not None:
        reply: Reply = await dataplane.scheduler(job.model).submit(job)
        return reply
    try:
        with anyio.fail_after(settings.request_timeout):
            return await anyio.to_thread.run_sync(dataplane.handle, route.op, call)
    except TimeoutError:
        raise NotReady(
            f"inference took longer than {settings.request_timeout:g} s (ONNXFN_REQUEST_TIMEOUT): "
            "send smaller batches",
            headers={"retry-after": "1"},
        ) from None


async def _body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client went away before the whole body arrived")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _multipart(scope: dict[str, Any], receive: Any, max_batch: int) -> list[Any]:
    """The ``file`` parts of a multipart body, as bytes (Starlette's parser, bounded by ``max_batch``)."""
    from starlette.requests import Request

    request = Request(scope, receive)
    try:
        form = await request.form(max_files=max_batch + 1, max_fields=max_batch + 16)
    except Exception as exc:  # starlette raises its own MultiPartException / HTTPException
        raise BadRequest(f"malformed multipart body: {getattr(exc, 'detail', exc)}") from None
    files = []
    try:
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                if key != "file":
                    raise BadRequest(f"multipart part {key!r}: name image parts 'file'")
                files.append(await value.read())
    finally:
        await form.close()
    if not files:
        raise BadRequest("multipart body has no 'file' parts: send each image as a part named 'file'")
    return files


async def _send_reply(send: Any, reply: Reply, *, head: bool = False) -> None:
    headers = [(b"content-length", str(len(reply.body)).encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    if "content-type" not in reply.headers:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else reply.body})
