"""The authorizer answers every case of the stored corpus exactly as the code
it was recorded from did (tests/lambda_bridge/decision_corpus.py): the same
response, byte for byte, and the same reason in the log."""
import pytest

from tests.lambda_bridge.decision_corpus import answer, load_corpus

CORPUS = load_corpus()


@pytest.mark.parametrize("case", CORPUS["cases"], ids=[c["name"] for c in CORPUS["cases"]])
def test_the_decision_is_the_recorded_one(case):
    assert answer(case, CORPUS["stores"]) == case["answer"]


def test_the_corpus_covers_what_it_claims():
    # A corpus of refusals only would let a rendering change through unseen.
    reasons = [case["answer"]["log"]["reason"] for case in CORPUS["cases"]]
    sources = {case["answer"]["log"]["source"] for case in CORPUS["cases"] if case["answer"]["log"]["reason"] == "ok"}
    devices = {case["answer"]["log"]["devices"] for case in CORPUS["cases"] if case["answer"]["log"]["reason"] == "ok"}

    assert reasons.count("ok") >= 50
    assert {"malformed_token", "bad_signature", "unsupported_alg", "unknown_kid", "wrong_audience", "wrong_issuer",
            "expired", "not_yet_valid", "invalid_claims", "token_too_large", "scope_required", "bad_snapshot",
            "principal_gone", "no_snapshot", "keys_unavailable", "client_id_mismatch", "token_revoked",
            "expires_too_soon", "wrong_authorizer"} <= set(reasons)
    assert sources == {"token", "mqtt_password", "mqtt_username", "http_header", "query_string"}
    for kind in ("signed", "compact"):
        allowed = {case["answer"]["log"]["source"] for case in CORPUS["cases"]
                   if case["answer"]["log"]["reason"] == "ok" and case["answer"]["log"]["credential"] == kind}
        assert allowed == sources, kind
    assert {0, 1, 10, 40} <= devices
