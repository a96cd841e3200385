"""HTTP/1.1 on the wire for the HTTPS and HTTP listeners
(docs/local-iot.md#listeners): read one request head and body with limits,
and write one response.

Only what clients of AWS IoT's data endpoint send: origin-form targets,
Content-Length bodies (curl, boto3 and the SDKs send one), `Expect:
100-continue`, keep-alive. Chunked request bodies are answered 501.
"""
from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote

from local_iot.http import Request, Response

MAX_HEAD = 16 * 1024  # request line and headers
MAX_HEADERS = 100
# A publish carries at most 128 KB (AWS IoT's message size); shadow documents
# are smaller. Room beyond that for an encoding's overhead.
MAX_BODY = 256 * 1024

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(r"([A-Z]+) (\S+) HTTP/(1\.[01])")


class BadRequest(Exception):
    """The request cannot be read; answer `status` and close."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Head:
    method: str
    target: str  # as sent: path and query string
    version: str  # "1.0" or "1.1"
    headers: dict[str, str]  # names lower-case; a repeated header's values joined with ", "
    raw: bytes  # the head as received, for the WebSocket handshake

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query_string(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        return "keep-alive" in tokens if self.version == "1.0" else "close" not in tokens

    @property
    def wants_websocket(self) -> bool:
        upgrade = {t.strip().lower() for t in self.headers.get("upgrade", "").split(",")}
        return self.method == "GET" and "websocket" in upgrade


async def read_head(reader: asyncio.StreamReader) -> Head | None:
    """The next request's head; None when the client closed between requests."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest(400, "the connection closed inside the request head") from None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "request head too large") from None
    if len(raw) > MAX_HEAD:
        raise BadRequest(431, "request head too large")
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        raise BadRequest(400, "undecodable head") from None
    lines = text[:-4].split("\r\n")
    while lines and lines[0] == "":
        lines.pop(0)  # RFC 9112 2.2: ignore empty lines before the request line
    if not lines:
        raise BadRequest(400, "empty request")
    matched = _REQUEST_LINE.fullmatch(lines[0])
    if not matched:
        raise BadRequest(400, "malformed request line")
    method, target, version = matched.groups()
    if not target.startswith("/"):
        raise BadRequest(400, "only origin-form targets are served")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, "too many headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            # Also refuses obsolete line folding (a line starting with a space).
            raise BadRequest(400, "malformed header line")
        name, value = name.lower(), value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Head(method, target, version, headers, raw)


async def read_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: Head) -> bytes:
    if "transfer-encoding" in head.headers:
        raise BadRequest(501, "chunked request bodies are not supported; send Content-Length")
    length = head.headers.get("content-length")
    if length is None:
        return b""
    if not re.fullmatch(r"[0-9]{1,10}", length):
        raise BadRequest(400, "malformed Content-Length")
    if int(length) > MAX_BODY:
        raise BadRequest(413, f"bodies of at most {MAX_BODY} bytes")
    if head.headers.get("expect", "").lower() == "100-continue" and int(length):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    try:
        return await reader.readexactly(int(length))
    except asyncio.IncompleteReadError:
        raise BadRequest(400, "the connection closed inside the body") from None


def request_from(head: Head, body: bytes, *, tls: bool, server_name: str | None, source_ip: str) -> Request:
    return Request(method=head.method, path=unquote(head.path), raw_path=head.path, query_string=head.query_string,
                   headers=dict(head.headers), body=body, tls=tls, server_name=server_name, source_ip=source_ip)


def encode_response(response: Response, *, keep_alive: bool, head_only: bool = False) -> bytes:
    try:
        phrase = HTTPStatus(response.status).phrase
    except ValueError:
        phrase = "Unknown"
    headers = {k.lower(): v for k, v in response.headers.items()}
    headers["content-length"] = str(len(response.body))
    headers["connection"] = "keep-alive" if keep_alive else "close"
    lines = [f"HTTP/1.1 {response.status} {phrase}"]
    lines += [f"{_title(name)}: {value}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


def error_response(status: int, message: str) -> Response:
    # The shape of AWS's JSON errors ({"message": ...}).
    return Response(status, json.dumps({"message": message}).encode(), {"content-type": "application/json"})


def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))
