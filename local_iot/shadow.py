"""The Device Shadow service, classic and named (docs/local-iot.md#device-shadows).

SKELETON: the names and signatures below are the contract with the broker
and the data plane.
"""
from __future__ import annotations


class ShadowError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Shadows:
    def on_publish(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """A client's publish to a shadow request topic
        ($aws/things/{thing}/shadow[/name/{name}]/get|update|delete): the
        messages the service publishes in answer (accepted/rejected, delta,
        documents). [] for any other topic."""
        raise NotImplementedError

    def get(self, thing: str, name: str | None) -> dict:
        raise NotImplementedError  # ShadowError(404, ...) when absent

    def update(self, thing: str, name: str | None, document: dict) -> tuple[dict, list[tuple[str, bytes]]]:
        """(the accepted document, the messages to publish as a result)."""
        raise NotImplementedError

    def delete(self, thing: str, name: str | None) -> tuple[dict, list[tuple[str, bytes]]]:
        raise NotImplementedError
