"""Raw HTTP/1.1 over a socket, for requests no well-behaved client library will send."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int | None  # None: the server closed without answering
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def _parse(data: bytes) -> RawResponse:
    if not data:
        return RawResponse(None, {}, b"")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return RawResponse(status, headers, body)


def send(
    url: str,
    data: bytes,
    *,
    chunks: list[bytes] | None = None,
    half_close: bool = False,
    timeout: float = 10.0,
) -> RawResponse:
    """Send ``data`` (then each of ``chunks``, stopping early if the server answers); read one response."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    received = b""
    try:
        sock.sendall(data)
        for chunk in chunks or []:
            sock.setblocking(False)
            try:
                received += sock.recv(65536)
            except BlockingIOError:
                pass
            sock.setblocking(True)
            sock.settimeout(timeout)
            if received:
                break  # answered early (e.g. 413 while the body still streams)
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        while b"\r\n\r\n" not in received or not _complete(received):
            try:
                more = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not more:
                break
            received += more
    finally:
        sock.close()
    return _parse(received)


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return True
