"""A fault-injecting HTTP/1.1 proxy for tests (127.0.0.1 only).

Per request it draws one fault: ``drop`` (reset the connection before forwarding: the server never sees
it), ``drop_after`` (forward, then reset instead of answering: the answer is lost), ``503`` (answer
503 with ``retry-after-ms``), ``429`` (answer 429 with ``Retry-After``), ``delay`` (wait, then
forward), or none. Keep-alive towards the client; one upstream connection per forwarded request.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections import Counter


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        drop: float = 0.0,
        drop_after: float = 0.0,
        unavailable: float = 0.0,
        throttle: float = 0.0,
        delay: float = 0.0,
        max_delay: float = 0.05,
        retry_after_ms: int = 10,
        seed: int = 0,
    ) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        assert host == "127.0.0.1"
        self.upstream = (host, int(port))
        self.weights = {
            "drop": drop,
            "drop_after": drop_after,
            "503": unavailable,
            "429": throttle,
            "delay": delay,
        }
        self.max_delay = max_delay
        self.retry_after_ms = retry_after_ms
        self.rng = random.Random(seed)
        self.faults: Counter[str] = Counter()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=256)
            self.port = self.server.sockets[0].getsockname()[1]
            self.ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def _draw(self) -> str:
        x = self.rng.random()
        for name, weight in self.weights.items():
            if x < weight:
                return name
            x -= weight
        return "none"

    @staticmethod
    def _abort(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:  # RST, not FIN: what a crashed or overloaded peer looks like
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                lines = head.decode("latin-1").split("\r\n")
                headers = [line for line in lines[1:] if line]
                length = 0
                for line in headers:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b""
                fault = self._draw()
                self.faults[fault] += 1
                if fault == "drop":
                    self._abort(writer)
                    return
                if fault in ("503", "429"):
                    payload = b'{"error": "injected %s"}' % fault.encode()
                    reason = "Service Unavailable" if fault == "503" else "Too Many Requests"
                    extra = (
                        f"retry-after-ms: {self.retry_after_ms}\r\n"
                        if fault == "503"
                        else "retry-after: 0\r\n"
                    )
                    writer.write(
                        (
                            f"HTTP/1.1 {fault} {reason}\r\n"
                            f"content-type: application/json\r\n{extra}content-length: {len(payload)}\r\n\r\n"
                        ).encode()
                        + payload
                    )
                    await writer.drain()
                    continue
                if fault == "delay":
                    await asyncio.sleep(self.rng.uniform(0, self.max_delay))
                forwarded = [lines[0]] + [h for h in headers if not h.lower().startswith("connection:")]
                request = ("\r\n".join([*forwarded, "connection: close"]) + "\r\n\r\n").encode() + body
                answer = await self._forward(request)
                if fault == "drop_after":
                    self._abort(writer)
                    return
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def _forward(self, request: bytes) -> bytes:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            up_writer.write(request)
            await up_writer.drain()
            head = await up_reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            kept = [line for line in lines[1:] if line and not line.lower().startswith("connection:")]
            length = None
            for line in kept:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            body = await (up_reader.readexactly(length) if length is not None else up_reader.read())
            return ("\r\n".join([lines[0], *kept]) + "\r\n\r\n").encode() + body
        finally:
            up_writer.close()
