"""The signing-key item format and the authorizer's settings."""
import pytest

from lambda_bridge import keys
from lambda_bridge.config import Config, ConfigError
from lambda_bridge.keys import Keyring, KeyringError, KeySlot

PEM = "-----BEGIN PUBLIC KEY-----\nMIIB...\n-----END PUBLIC KEY-----\n"


def ring(**slots) -> Keyring:
    return Keyring(version=3, slots={name: KeySlot(f"kid-{name}", PEM, state) for name, state in slots.items()},
                   active=next((n for n, s in slots.items() if s == keys.ACTIVE), None))


def test_a_key_item_survives_a_round_trip():
    original = ring(A=keys.RETIRING, B=keys.ACTIVE)

    assert keys.from_item(keys.to_item(original)) == original


@pytest.mark.parametrize("states, verifying", [
    ({"A": keys.ACTIVE}, {"kid-A"}),
    ({"A": keys.ACTIVE, "B": keys.STAGED}, {"kid-A", "kid-B"}),
    ({"A": keys.RETIRING, "B": keys.ACTIVE}, {"kid-A", "kid-B"}),
    ({"A": keys.RETIRED, "B": keys.ACTIVE}, {"kid-B"}),
    ({}, set()),
])
def test_tokens_verify_against_every_slot_but_a_retired_one(states, verifying):
    assert set(ring(**states).verifying()) == verifying


@pytest.mark.parametrize("change, message", [
    (lambda item: item.update(f={"N": "2"}), "format 2"),
    (lambda item: item.pop("v"), "malformed"),
    (lambda item: item["A"]["M"]["state"].update(S="compromised"), "unknown state"),
    (lambda item: item["B"]["M"]["kid"].update(S="kid-A"), "same kid"),
    (lambda item: item["A"]["M"]["kid"].update(S=""), "unusable kid"),
    (lambda item: item["A"]["M"]["pem"].update(S="x" * 5000), "unusable public key"),
    (lambda item: item.update(active={"S": "B"}), "does not hold an active key"),
    (lambda item: item["A"].update(M="not a map"), "malformed"),
])
def test_a_key_item_it_cannot_trust_is_refused(change, message):
    item = keys.to_item(ring(A=keys.ACTIVE, B=keys.STAGED))
    change(item)

    with pytest.raises(KeyringError, match=message):
        keys.from_item(item)


def test_the_key_item_cannot_collide_with_a_snapshot():
    from lambda_bridge import snapshot

    assert keys.ITEM_KEY.split("#")[0] not in snapshot.KINDS


ENV = {
    "AWS_REGION": "eu-west-1", "DEVSHARE_TABLE": "devshare", "DEVSHARE_TOKEN_ISSUER": "https://devshare.example",
    "DEVSHARE_TOKEN_AUDIENCE": "devshare-iot", "DEVSHARE_AWS_ACCOUNT_ID": "123456789012",
}


def test_settings_fall_back_to_safe_defaults():
    config = Config.from_env(ENV)

    assert (config.region, config.table_region) == ("eu-west-1", "eu-west-1")
    assert config.refresh_seconds == 300 and config.disconnect_seconds == 86_400
    assert config.endpoint_url is None and config.key_cache_seconds <= 60


def test_the_iot_region_may_differ_from_the_lambdas():
    config = Config.from_env({**ENV, "DEVSHARE_IOT_REGION": "us-west-2"})

    assert (config.region, config.table_region) == ("us-west-2", "eu-west-1")


@pytest.mark.parametrize("change, message", [
    ({"DEVSHARE_TABLE": ""}, "DEVSHARE_TABLE is not set"),
    ({"DEVSHARE_AWS_ACCOUNT_ID": "12345"}, "12-digit"),
    ({"DEVSHARE_IOT_REGION": "eu-west-1:*"}, "not an AWS region"),
    ({"DEVSHARE_REFRESH_SECONDS": "60"}, "300..86400"),
    ({"DEVSHARE_DISCONNECT_SECONDS": "a day"}, "whole number"),
    ({"DEVSHARE_KEY_CACHE_SECONDS": "3600"}, "1..60"),
    ({"DEVSHARE_TOKEN_KEY_NAME": "token name"}, "DEVSHARE_TOKEN_KEY_NAME"),
])
def test_a_bad_setting_is_one_line_naming_it(change, message):
    with pytest.raises(ConfigError, match=message) as error:
        Config.from_env({**ENV, **change})

    assert "\n" not in str(error.value)
