"""HTTP/1.1 on the HTTPS and HTTP listeners (docs/local-iot.md#listeners).

SKELETON: the names below are the contract between the listeners, which
read requests and upgrade `/mqtt` to a WebSocket, and the data plane.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-decoded path, without the query string
    raw_path: str  # as sent
    query_string: str  # without "?"
    headers: dict[str, str]  # names lower-case; a repeated header's values joined with ", "
    body: bytes
    tls: bool
    server_name: str | None = None
    source_ip: str = ""


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
