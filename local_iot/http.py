"""An HTTP request and its response as values (docs/local-iot.md#listeners):
what the listeners hand the data plane, and what it answers. Reading and
writing them on the wire is local_iot/http1.py's part.
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
