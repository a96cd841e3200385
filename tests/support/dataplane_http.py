"""A DataPlane served over the standard library's ThreadingHTTPServer on
loopback: a stand-in for local_iot's own HTTP listener until the parts are
integrated, so that real boto3 and real HTTP clients can be pointed at the
data plane (docs/local-iot.md#the-data-plane).

DataPlane.handle runs on one asyncio loop in a thread of its own, as it
will on the listener's loop; the server's threads hand requests to it.
"""
from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from local_iot.http import Request


class DataPlaneServer:
    def __init__(self, plane):
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._loop_thread.start()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(plane, self._loop))
        self._server_thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._server_thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout=5)
        self._loop.close()


def _handler_for(plane, loop: asyncio.AbstractEventLoop) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            raw_path, _, query_string = self.path.partition("?")
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                name = name.lower()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            body = self.rfile.read(int(headers.get("content-length") or 0))
            request = Request(method=self.command, path=unquote(raw_path), raw_path=raw_path,
                              query_string=query_string, headers=headers, body=body, tls=False,
                              server_name=headers.get("host", "").rsplit(":", 1)[0] or None,
                              source_ip=self.client_address[0])
            response = asyncio.run_coroutine_threadsafe(plane.handle(request), loop).result(timeout=30)
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        do_GET = do_POST = do_DELETE = do_PUT = _serve  # noqa: N815 (the names http.server calls)

        def log_message(self, format, *args) -> None:  # noqa: A002 (http.server's signature)
            pass

    return Handler
