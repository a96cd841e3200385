"""MQTT.js (pinned in tests/browser/package-lock.json) in Debian's Chromium,
driven through Playwright: what a browser app does with `wssUrl`
(docs/testing.md#mqttjs-in-chromium, docs/credentials.md).

    with BrowserMqtt(trust=server_certificate_pem) as browser:
        client = browser.client()
        client.connect("wss://127.0.0.1:8443/mqtt?...", clientId="u1.2.app")
        client.subscribe("dev/lamp/out/#", qos=1)

Each `client()` is one page of tests/browser/mqtt.html holding one MQTT.js
client, served from a local HTTP server of the harness's own. Results are what
the client observes: the CONNACK or the error MQTT.js reports, the SUBACK's
granted codes, the PUBACK, received messages and close/disconnect events.

A local CA: Chromium has no option to add a trust anchor, but
`--ignore-certificate-errors-spki-list` accepts a server whose certificate
chain holds one of the listed public keys (SHA-256 of the SubjectPublicKeyInfo,
base64). `trust=` takes a PEM file and lists every certificate in it: the
server's own certificate always works; a CA works when the server sends it in
its chain. Only certificate-verification errors are forgiven, and only for
those keys: any other server still fails as it would on the web. Django-free.
"""
import base64
import functools
import hashlib
import http.server
import os
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

HERE = Path(__file__).resolve().parents[1] / "browser"
PAGE = "mqtt.html"
MQTT_JS = HERE / "node_modules" / "mqtt" / "dist" / "mqtt.min.js"
CHROMIUM = "/usr/bin/chromium"
# Playwright cannot download its own browsers here; drive the distribution's build, quietly
# (the same arguments as tests/devices/test_admin_browser.py).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
TIMEOUT_MS = 10_000


def spki_hashes(pem_file: Path) -> list[str]:
    """base64(SHA-256(SubjectPublicKeyInfo)) of every certificate in the file,
    the form `--ignore-certificate-errors-spki-list` takes."""
    certs = x509.load_pem_x509_certificates(Path(pem_file).read_bytes())
    return [base64.b64encode(hashlib.sha256(cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()).decode()
        for cert in certs]


def missing() -> str | None:
    """Why the harness cannot run here, or None."""
    if not os.path.exists(CHROMIUM):
        return f"Debian chromium at {CHROMIUM}"
    if not MQTT_JS.exists():
        return f"MQTT.js at {MQTT_JS.relative_to(HERE.parents[1])} (`make test` runs npm ci in tests/browser)"
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002  (the base class's signature)
        pass


class MqttPage:
    """One MQTT.js client in one page; every call returns what the client saw,
    or {"error": "timeout"} after the harness's call timeout (10 s)."""

    def __init__(self, page):
        self.page = page

    def connect(self, url: str, **options) -> dict:
        """MQTT.js connect options as keywords (clientId, username, password,
        protocolVersion, clean, will, properties, ...). Returns {"connack": ...},
        {"error": message, "code": return or reason code} or {"closed": True}."""
        return self.page.evaluate("([url, options]) => window.mqttConnect(url, options)", [url, options])

    def subscribe(self, topic_filter: str, qos: int = 0) -> dict:
        """{"granted": [the SUBACK's code: QoS, or 128 and up]} (with "error"
        when it is a failure), or {"error": ..., "code": ...} without a SUBACK."""
        return self.page.evaluate("([f, qos]) => window.mqttSubscribe(f, qos)", [topic_filter, qos])

    def publish(self, topic: str, payload: str, qos: int = 0, retain: bool = False) -> dict:
        """{"ok": True, "reasonCode": ...} (QoS 1: after the PUBACK) or {"error": ..., "code": ...}."""
        return self.page.evaluate("([t, p, qos, retain]) => window.mqttPublish(t, p, qos, retain)",
                                  [topic, payload, qos, retain])

    def messages(self) -> list[dict]:
        return self.page.evaluate("() => window.mqttMessages()")

    def events(self) -> list[dict]:
        return self.page.evaluate("() => window.mqttEvents()")

    def connected(self) -> bool:
        return self.page.evaluate("() => window.mqttConnected()")

    def wait_for_messages(self, count: int, timeout_ms: int = TIMEOUT_MS) -> list[dict]:
        """The messages once at least `count` have arrived (a bounded wait, not a timing check)."""
        self.page.wait_for_function("(n) => window.mqttReceived.length >= n", arg=count, timeout=timeout_ms)
        return self.messages()

    def wait_for_event(self, kind: str, timeout_ms: int = TIMEOUT_MS) -> dict:
        """The first event of that type ("close", "disconnect", "error", "offline")."""
        self.page.wait_for_function("(kind) => window.mqttEventLog.some((e) => e.type === kind)",
                                    arg=kind, timeout=timeout_ms)
        return next(e for e in self.events() if e["type"] == kind)

    def end(self) -> bool:
        return self.page.evaluate("() => window.mqttEnd()")


class _Playwright:
    """One Playwright per process, shared by the harnesses open at once: its
    sync API cannot be started twice in a thread."""

    instance, users = None, 0

    @classmethod
    def acquire(cls):
        from playwright.sync_api import sync_playwright

        if cls.users == 0:
            cls.instance = sync_playwright().start()
        cls.users += 1
        return cls.instance

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users == 0:
            cls.instance.stop()
            cls.instance = None


class BrowserMqtt:
    """Chromium with the harness page served locally; `trust` is a PEM file
    (server certificate or chain) whose keys Chromium accepts for wss://."""

    def __init__(self, *, trust: Path | None = None, call_timeout_ms: int = TIMEOUT_MS):
        self.trust, self.call_timeout_ms = trust, call_timeout_ms
        self._server = self._playwright = self._browser = None

    def __enter__(self) -> "BrowserMqtt":
        reason = missing()
        if reason:
            raise RuntimeError(f"browser MQTT harness: missing {reason}")
        handler = functools.partial(_QuietHandler, directory=str(HERE))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        args = list(CHROMIUM_ARGS)
        if self.trust is not None:
            args.append("--ignore-certificate-errors-spki-list=" + ",".join(spki_hashes(self.trust)))
        self._playwright = _Playwright.acquire()
        try:
            self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def client(self) -> MqttPage:
        page = self._browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{self.base_url}/{PAGE}")
        page.wait_for_function("() => typeof window.mqtt === 'object' && typeof window.mqttConnect === 'function'")
        page.evaluate("(ms) => { window.mqttTimeoutMs = ms; }", self.call_timeout_ms)
        return MqttPage(page)

    def __exit__(self, *exc) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            _Playwright.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = self._playwright = self._browser = None
