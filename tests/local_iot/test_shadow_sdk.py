"""The AWS IoT Device SDK v2's shadow client reads the service's answers
(docs/local-iot.md#device-shadows): its own models (awsiot.iotshadow),
which a device running the SDK deserializes every shadow message with,
find each field where AWS puts it."""
import datetime
import json

from awsiot import iotshadow

from local_iot.shadow import Shadows

T = 1_700_000_000
PREFIX = "$aws/things/lamp/shadow/name/config"


def answers(shadows, topic, document):
    return {topic: json.loads(body) for topic, body in shadows.on_publish(topic, json.dumps(document).encode())}


def test_the_sdk_reads_accepted_delta_documents_and_get():
    shadows = Shadows(clock=lambda: T)
    answers(shadows, f"{PREFIX}/update", {"state": {"reported": {"color": "blue"}}})
    update = answers(shadows, f"{PREFIX}/update", {"state": {"desired": {"color": "red"}}, "clientToken": "c"})

    accepted = iotshadow.UpdateShadowResponse.from_payload(update[f"{PREFIX}/update/accepted"])
    assert (accepted.state.desired, accepted.version, accepted.client_token) == ({"color": "red"}, 2, "c")
    assert accepted.timestamp == datetime.datetime.fromtimestamp(T)
    assert accepted.metadata.desired == {"color": {"timestamp": T}}

    delta = iotshadow.ShadowDeltaUpdatedEvent.from_payload(update[f"{PREFIX}/update/delta"])
    assert (delta.state, delta.version, delta.metadata) == ({"color": "red"}, 2, {"color": {"timestamp": T}})

    documents = iotshadow.ShadowUpdatedEvent.from_payload(update[f"{PREFIX}/update/documents"])
    assert (documents.previous.version, documents.previous.state.reported) == (1, {"color": "blue"})
    assert documents.previous.state.desired is None
    assert (documents.current.version, documents.current.state.desired) == (2, {"color": "red"})

    got = answers(shadows, f"{PREFIX}/get", {"clientToken": "g"})[f"{PREFIX}/get/accepted"]
    shadow = iotshadow.GetShadowResponse.from_payload(got)
    assert (shadow.state.delta, shadow.state.reported, shadow.client_token) == ({"color": "red"}, {"color": "blue"},
                                                                              "g")


def test_the_sdk_reads_rejections_and_deletion():
    shadows = Shadows(clock=lambda: T)
    answers(shadows, f"{PREFIX}/update", {"state": {"reported": {"a": 1}}})

    conflict = answers(shadows, f"{PREFIX}/update", {"state": {"reported": {"a": 2}}, "version": 5,
                                                     "clientToken": "u"})[f"{PREFIX}/update/rejected"]
    error = iotshadow.ErrorResponse.from_payload(conflict)
    assert (error.code, error.message, error.client_token) == (409, "Version conflict", "u")

    deleted = answers(shadows, f"{PREFIX}/delete", {"clientToken": "d"})[f"{PREFIX}/delete/accepted"]
    response = iotshadow.DeleteShadowResponse.from_payload(deleted)
    assert (response.version, response.client_token) == (1, "d")
