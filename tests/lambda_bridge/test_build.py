"""`build(env)`: the handler is made from the mapping it is given, and its log
line says which request it answered and whether that was the cold start."""
from lambda_bridge import snapshot
from lambda_bridge.snapshot import Entry
from tests.support.lambda_env import Context

LAMP = "lamp-1"


def test_the_log_line_carries_the_request_id_and_the_cold_start(lam):
    lam.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.VIEW)])
    event = lam.event("test_invoke", lam.token())

    first = Context()
    lam.capsys.readouterr()
    assert lam.handler(event, first)["isAuthenticated"]
    record = [line for line in lam.capsys.readouterr().out.splitlines() if line.strip()]
    assert '"request_id":"%s"' % first.aws_request_id in record[0] and '"cold_start":true' in record[0]

    lam.invoke(event)
    assert lam.last_log["cold_start"] is False and lam.last_log["request_id"]


def test_a_handler_is_built_from_its_mapping_alone(cold_start, monkeypatch):
    # A setting left in the process's environment does not reach a handler
    # built from a mapping without it.
    monkeypatch.setenv("DEVSHARE_TOKEN_AUDIENCE", "somebody-else")
    monkeypatch.setenv("DEVSHARE_REFRESH_SECONDS", "900")
    lam = cold_start()
    assert lam.handler.config.audience != "somebody-else"
    assert lam.handler.config.refresh_seconds == 300


def test_without_a_context_the_request_id_is_empty(lam):
    lam.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.VIEW)])
    lam.capsys.readouterr()
    lam.handler(lam.event("test_invoke", lam.token()), None)
    assert '"request_id":null' in lam.capsys.readouterr().out
