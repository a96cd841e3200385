"""The Device Shadow service (docs/local-iot.md#device-shadows), checked
against the documents AWS's developer guide shows: every expected document
here is written out by hand from those pages, not taken from the code.

https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-document.html
https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-mqtt.html
https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-error-messages.html
"""
import json

import pytest

from local_iot.shadow import ShadowError, Shadows

CLASSIC = "$aws/things/lamp/shadow"
NAMED = "$aws/things/lamp/shadow/name/config"


class Clock:
    """Epoch seconds that a test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.4):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def shadows(clock):
    return Shadows(clock=clock)


def publish(shadows, topic, document=None, raw=None):
    """The service's answers to one publish, as {topic: decoded JSON}."""
    payload = raw if raw is not None else (b"" if document is None else json.dumps(document).encode())
    answers = shadows.on_publish(topic, payload)
    topics = [topic for topic, _ in answers]
    assert len(topics) == len(set(topics)), "one answer per topic"
    return {topic: json.loads(body) for topic, body in answers}


T = 1_700_000_000  # the clock's second


# --- update, get, delta, documents ------------------------------------------------------


def test_a_first_desired_update_is_accepted_with_metadata_a_delta_and_documents(shadows):
    answers = publish(shadows, f"{CLASSIC}/update",
                      {"state": {"desired": {"color": "red", "power": "on"}}, "clientToken": "c-1"})

    assert set(answers) == {f"{CLASSIC}/update/accepted", f"{CLASSIC}/update/delta",
                            f"{CLASSIC}/update/documents"}
    assert answers[f"{CLASSIC}/update/accepted"] == {
        "state": {"desired": {"color": "red", "power": "on"}},
        "metadata": {"desired": {"color": {"timestamp": T}, "power": {"timestamp": T}}},
        "version": 1, "timestamp": T, "clientToken": "c-1"}
    assert answers[f"{CLASSIC}/update/delta"] == {
        "state": {"color": "red", "power": "on"},
        "metadata": {"color": {"timestamp": T}, "power": {"timestamp": T}},
        "version": 1, "timestamp": T, "clientToken": "c-1"}
    assert answers[f"{CLASSIC}/update/documents"] == {
        "previous": None,
        "current": {"state": {"desired": {"color": "red", "power": "on"}},
                    "metadata": {"desired": {"color": {"timestamp": T}, "power": {"timestamp": T}}},
                    "version": 1},
        "timestamp": T, "clientToken": "c-1"}


def test_get_shows_the_guides_delta_example(shadows):
    # device-shadow-document.html#delta-state: desired keys missing from or
    # different in reported are in the delta; reported-only keys are not.
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"color": "GREEN", "engine": "ON"}}})
    publish(shadows, f"{CLASSIC}/update", {"state": {"desired": {"color": "RED", "state": "STOP"}}})

    got = publish(shadows, f"{CLASSIC}/get", {"clientToken": "g"})[f"{CLASSIC}/get/accepted"]

    assert got == {
        "state": {"desired": {"color": "RED", "state": "STOP"},
                  "reported": {"color": "GREEN", "engine": "ON"},
                  "delta": {"color": "RED", "state": "STOP"}},
        "metadata": {"desired": {"color": {"timestamp": T}, "state": {"timestamp": T}},
                     "reported": {"color": {"timestamp": T}, "engine": {"timestamp": T}}},
        "version": 2, "timestamp": T, "clientToken": "g"}


def test_a_nested_delta_keeps_the_path_to_the_differing_leaf(shadows):
    # The guide's lights example: only g differs.
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"lights": {"color": {"r": 255, "g": 0, "b": 255}}}}})
    answers = publish(shadows, f"{CLASSIC}/update",
                      {"state": {"desired": {"lights": {"color": {"r": 255, "g": 255, "b": 255}}}}})

    assert answers[f"{CLASSIC}/update/delta"]["state"] == {"lights": {"color": {"g": 255}}}
    assert answers[f"{CLASSIC}/update/delta"]["metadata"] == {"lights": {"color": {"g": {"timestamp": T}}}}
    assert shadows.get("lamp", None)["state"]["delta"] == {"lights": {"color": {"g": 255}}}


def test_the_delta_carries_every_differing_desired_key_not_only_the_updated_ones(shadows, clock):
    publish(shadows, f"{CLASSIC}/update", {"state": {"desired": {"color": "red"}}})
    clock.now += 60
    answers = publish(shadows, f"{CLASSIC}/update", {"state": {"desired": {"power": "on"}}})

    delta = answers[f"{CLASSIC}/update/delta"]
    assert delta["state"] == {"color": "red", "power": "on"}
    # Each key's metadata is its desired timestamp: when it was asked for.
    assert delta["metadata"] == {"color": {"timestamp": T}, "power": {"timestamp": T + 60}}
    assert delta["timestamp"] == T + 60


def test_once_reported_matches_desired_the_delta_is_gone(shadows):
    publish(shadows, f"{CLASSIC}/update", {"state": {"desired": {"color": "red"}}})
    answers = publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"color": "red"}}})

    assert f"{CLASSIC}/update/delta" not in answers
    assert "delta" not in shadows.get("lamp", None)["state"]


def test_true_and_1_differ_in_the_delta(shadows):
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"on": 1}}})
    answers = publish(shadows, f"{CLASSIC}/update", {"state": {"desired": {"on": True}}})

    assert answers[f"{CLASSIC}/update/delta"]["state"] == {"on": True}


def test_a_reported_only_update_publishes_no_delta_even_when_one_remains(shadows):
    # Assumed (docs/local-iot.md#device-shadows): /delta follows a request
    # that sets desired state.
    publish(shadows, f"{CLASSIC}/update", {"state": {"desired": {"color": "red"}}})
    answers = publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"color": "blue"}}})

    assert set(answers) == {f"{CLASSIC}/update/accepted", f"{CLASSIC}/update/documents"}
    assert shadows.get("lamp", None)["state"]["delta"] == {"color": "red"}


def test_update_documents_carry_previous_and_current(shadows, clock):
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"temp": 20}}})
    clock.now += 5
    documents = publish(shadows, f"{CLASSIC}/update",
                        {"state": {"reported": {"temp": 21}}})[f"{CLASSIC}/update/documents"]

    assert documents == {
        "previous": {"state": {"reported": {"temp": 20}}, "metadata": {"reported": {"temp": {"timestamp": T}}},
                     "version": 1},
        "current": {"state": {"reported": {"temp": 21}}, "metadata": {"reported": {"temp": {"timestamp": T + 5}}},
                    "version": 2},
        "timestamp": T + 5}


def test_metadata_keeps_each_leafs_own_time(shadows, clock):
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"a": 1, "b": {"c": 2}}}})
    clock.now += 100
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"b": {"d": 3}}}})

    got = shadows.get("lamp", None)
    assert got["state"] == {"reported": {"a": 1, "b": {"c": 2, "d": 3}}}
    assert got["metadata"] == {"reported": {"a": {"timestamp": T}, "b": {"c": {"timestamp": T},
                                                                          "d": {"timestamp": T + 100}}}}
    assert got["timestamp"] == T + 100


# --- null and arrays --------------------------------------------------------------------


def test_null_removes_a_key_and_its_metadata(shadows):
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"color": "red", "temp": 5}}})
    accepted = publish(shadows, f"{CLASSIC}/update",
                       {"state": {"reported": {"temp": None}}})[f"{CLASSIC}/update/accepted"]

    # The accepted document echoes the request, null included.
    assert accepted["state"] == {"reported": {"temp": None}}
    assert accepted["metadata"] == {"reported": {"temp": {"timestamp": T}}}
    got = shadows.get("lamp", None)
    assert got["state"] == {"reported": {"color": "red"}}
    assert got["metadata"] == {"reported": {"color": {"timestamp": T}}}


def test_desired_null_removes_the_whole_desired_section(shadows):
    # The guide's example under "Empty shadow document properties".
    publish(shadows, f"{CLASSIC}/update", {"state": {"desired": {"color": "red", "mode": "eco"}}})
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"color": "red"}, "desired": None}})

    got = shadows.get("lamp", None)
    assert got["state"] == {"reported": {"color": "red"}}
    assert got["metadata"] == {"reported": {"color": {"timestamp": T}}}


def test_removing_every_key_leaves_an_empty_yet_existing_shadow(shadows):
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"a": {"b": 1}}}})
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"a": {"b": None}}}})

    assert shadows.get("lamp", None) == {"state": {}, "metadata": {}, "version": 2, "timestamp": T}


def test_an_array_is_replaced_whole_with_one_metadata_entry_per_element(shadows):
    publish(shadows, f"{CLASSIC}/update", {"state": {"desired": {"colors": ["RED", "GREEN", "BLUE"]}}})
    publish(shadows, f"{CLASSIC}/update", {"state": {"desired": {"colors": ["RED"]},
                                                     "reported": {"colors": ["RED", "GREEN"]}}})

    got = shadows.get("lamp", None)
    assert got["state"]["desired"] == {"colors": ["RED"]}
    assert got["metadata"]["desired"] == {"colors": [{"timestamp": T}]}
    # Arrays are values: the whole desired array is the delta.
    assert got["state"]["delta"] == {"colors": ["RED"]}


def test_an_array_holding_null_is_rejected(shadows):
    rejected = publish(shadows, f"{CLASSIC}/update",
                       {"state": {"desired": {"colors": [None, "RED"]}}})[f"{CLASSIC}/update/rejected"]
    assert rejected["code"] == 400
    with pytest.raises(ShadowError):
        shadows.get("lamp", None)


# --- versions ---------------------------------------------------------------------------


def test_a_stale_version_is_a_409_conflict_and_changes_nothing(shadows):
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"v": 1}}})
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"v": 2}}})

    answers = publish(shadows, f"{CLASSIC}/update",
                      {"state": {"reported": {"v": 3}}, "version": 1, "clientToken": "stale"})

    assert answers == {f"{CLASSIC}/update/rejected": {"code": 409, "message": "Version conflict",
                                                      "timestamp": T, "clientToken": "stale"}}
    assert shadows.get("lamp", None)["state"] == {"reported": {"v": 2}}
    assert shadows.get("lamp", None)["version"] == 2


def test_the_current_version_is_accepted_and_incremented(shadows):
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"v": 1}}})

    accepted = publish(shadows, f"{CLASSIC}/update",
                       {"state": {"reported": {"v": 2}}, "version": 1})[f"{CLASSIC}/update/accepted"]

    assert accepted["version"] == 2


def test_deleting_keeps_the_version_and_a_new_shadow_carries_on(shadows):
    # "deleting a shadow does not reset its version number to 0"
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"v": 1}}})
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"v": 2}}})

    deleted = publish(shadows, f"{CLASSIC}/delete", {"clientToken": "d"})
    assert deleted == {f"{CLASSIC}/delete/accepted": {"version": 2, "timestamp": T, "clientToken": "d"}}
    gone = publish(shadows, f"{CLASSIC}/get")[f"{CLASSIC}/get/rejected"]
    assert gone == {"code": 404, "message": "No shadow exists with name: 'lamp'", "timestamp": T}

    again = publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"v": 9}}})
    assert again[f"{CLASSIC}/update/accepted"]["version"] == 3
    assert again[f"{CLASSIC}/update/documents"]["previous"] is None
    assert shadows.get("lamp", None)["state"] == {"reported": {"v": 9}}


def test_delete_ignores_what_its_message_holds(shadows):
    publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"v": 1}}})

    answers = publish(shadows, f"{CLASSIC}/delete", raw=b"not json")

    assert answers == {f"{CLASSIC}/delete/accepted": {"version": 1, "timestamp": T}}


def test_deleting_a_missing_shadow_is_rejected_with_404(shadows):
    answers = publish(shadows, f"{NAMED}/delete", {"clientToken": "x"})

    assert answers == {f"{NAMED}/delete/rejected": {
        "code": 404, "message": "No shadow exists with name: 'lamp~config'", "timestamp": T, "clientToken": "x"}}


# --- named shadows and topics -----------------------------------------------------------


def test_named_and_classic_shadows_are_separate_and_answer_on_their_own_prefix(shadows):
    answers = publish(shadows, f"{NAMED}/update", {"state": {"desired": {"rate": 5}}})

    assert set(answers) == {f"{NAMED}/update/accepted", f"{NAMED}/update/delta", f"{NAMED}/update/documents"}
    assert shadows.get("lamp", "config")["state"]["desired"] == {"rate": 5}
    assert publish(shadows, f"{CLASSIC}/get")[f"{CLASSIC}/get/rejected"]["code"] == 404
    assert shadows.names("lamp") == ["config"]


def test_names_lists_existing_named_shadows_only(shadows):
    for topic in (f"{CLASSIC}/update", "$aws/things/lamp/shadow/name/b/update",
                  "$aws/things/lamp/shadow/name/a/update", "$aws/things/other/shadow/name/c/update"):
        publish(shadows, topic, {"state": {"reported": {"x": 1}}})
    publish(shadows, "$aws/things/lamp/shadow/name/b/delete")

    assert shadows.names("lamp") == ["a"]


@pytest.mark.parametrize("topic", [
    f"{CLASSIC}/get/accepted", f"{CLASSIC}/update/delta", f"{NAMED}/update/documents",
    "$aws/things/lamp/shadow/name/update", "$aws/things/lamp/shadow/list", "dev/lamp/out/temp",
    "$aws/things/lamp/shadows/update", "$aws/events/presence/connected/lamp",
])
def test_other_topics_get_no_answer(shadows, topic):
    assert shadows.on_publish(topic, b'{"state": {"reported": {"x": 1}}}') == []


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "message"), [
    (b"{nope", "Invalid JSON"),
    (b"", "Invalid JSON"),
    (b"[1, 2]", "Invalid JSON"),
    (b'{"desired": {"a": 1}}', "Missing required node: state"),
    (b'{"state": 5}', "State node must be an object"),
    (b'{"state": {"desired": "red"}}', "Desired node must be an object"),
    (b'{"state": {"reported": [1]}}', "Reported node must be an object"),
    (b'{"state": {"delta": {"a": 1}}}', "State contains an invalid node"),
    (b'{"state": {"reported": {"a": 1}}, "version": "1"}', "Invalid version"),
    (b'{"state": {"reported": {"a": 1}}, "version": true}', "Invalid version"),
    (b'{"state": {"reported": {"a": 1}}, "clientToken": 7}', "Invalid clientToken"),
    (b'{"state": {"reported": {"a": 1}}, "clientToken": "' + b"t" * 65 + b'"}', "Invalid clientToken"),
    (b'{"state": {"reported": {"1": {"2": {"3": {"4": {"5": {"6": {"7": 0}}}}}}}}}',
     "JSON contains too many levels of nesting; maximum is 6"),
])
def test_bad_updates_are_rejected_with_400_and_awss_message(shadows, payload, message):
    answers = publish(shadows, f"{CLASSIC}/update", raw=payload)

    assert answers == {f"{CLASSIC}/update/rejected": {"code": 400, "message": message, "timestamp": T}}


def test_six_levels_of_nesting_are_allowed(shadows):
    # Six keys deep under reported; one more is refused (above).
    six = {"1": {"2": {"3": {"4": {"5": {"6": 0}}}}}}
    answers = publish(shadows, f"{CLASSIC}/update", {"state": {"reported": six}})

    assert f"{CLASSIC}/update/accepted" in answers


def test_a_64_byte_client_token_is_echoed(shadows):
    token = "é" * 32  # 64 bytes in UTF-8
    answers = publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"a": 1}}, "clientToken": token})

    assert answers[f"{CLASSIC}/update/accepted"]["clientToken"] == token


def test_a_payload_that_is_not_utf8_is_415(shadows):
    answers = publish(shadows, f"{CLASSIC}/update", raw=b'{"state": {"reported": {"a": "\xff"}}}')

    assert answers[f"{CLASSIC}/update/rejected"]["code"] == 415


def test_state_beyond_8_kb_is_413_counting_the_merged_document(shadows):
    # Each half fits; together desired and reported pass 8,192 bytes.
    half = "x" * 4_100
    assert f"{CLASSIC}/update/accepted" in publish(shadows, f"{CLASSIC}/update", {"state": {"desired": {"a": half}}})

    answers = publish(shadows, f"{CLASSIC}/update", {"state": {"reported": {"a": half}}, "clientToken": "big"})

    assert answers == {f"{CLASSIC}/update/rejected": {
        "code": 413, "message": "The payload exceeds the maximum size allowed", "timestamp": T, "clientToken": "big"}}
    assert "reported" not in shadows.get("lamp", None)["state"]


def test_metadata_does_not_count_toward_8_kb(shadows):
    # 700 one-character keys: ~5.5 KB of state, far more with their metadata.
    many = {f"k{i:03d}": 1 for i in range(700)}
    answers = publish(shadows, f"{CLASSIC}/update", {"state": {"reported": many}})

    assert f"{CLASSIC}/update/accepted" in answers


@pytest.mark.parametrize(("thing", "name"), [("t" * 129, None), ("bad/thing", None), ("lamp", "n" * 65),
                                             ("lamp", "bad name"), ("", None)])
def test_names_beyond_awss_limits_are_400(shadows, thing, name):
    with pytest.raises(ShadowError) as refused:
        shadows.update(thing, name, {"state": {"reported": {"a": 1}}})
    assert refused.value.code == 400


def test_names_at_awss_limits_are_fine(shadows):
    accepted, _ = shadows.update("t" * 128, "$n:_-" + "n" * 59, {"state": {"reported": {"a": 1}}})
    assert accepted["version"] == 1


def test_the_rest_calls_raise_what_mqtt_rejects(shadows):
    with pytest.raises(ShadowError) as missing:
        shadows.get("lamp", "config")
    assert (missing.value.code, missing.value.message) == (404, "No shadow exists with name: 'lamp~config'")

    shadows.update("lamp", None, {"state": {"reported": {"a": 1}}})
    with pytest.raises(ShadowError) as conflict:
        shadows.update("lamp", None, {"state": {"reported": {"a": 2}}, "version": 7})
    assert (conflict.value.code, conflict.value.message) == (409, "Version conflict")


def test_rest_update_returns_the_accepted_document_and_the_messages_to_publish(shadows):
    accepted, messages = shadows.update("lamp", "config", {"state": {"desired": {"rate": 5}}, "clientToken": "r"})

    assert accepted == {"state": {"desired": {"rate": 5}}, "metadata": {"desired": {"rate": {"timestamp": T}}},
                        "version": 1, "timestamp": T, "clientToken": "r"}
    assert [topic for topic, _ in messages] == [f"{NAMED}/update/accepted", f"{NAMED}/update/delta",
                                                 f"{NAMED}/update/documents"]
    assert json.loads(messages[0][1]) == accepted

    deleted, messages = shadows.delete("lamp", "config")
    assert deleted == {"version": 1, "timestamp": T}
    assert [(topic, json.loads(body)) for topic, body in messages] == [(f"{NAMED}/delete/accepted", deleted)]
