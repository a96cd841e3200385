"""Django's levels, thing names and the template's token key name are the
vocabulary's (lambda_bridge/vocabulary.py); where a literal must stay (a
migration, the CloudFormation template) it is checked against it here."""
import re

import pytest
from cfnlint.decode.decode import decode_str
from django.core.validators import RegexValidator
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from authz.snapshots.compiler import LEVEL_CODES
from devices.api import filters, serializers
from devices.models import SHARE_LEVELS, THING_NAME_RE, Device, Level, validate_thing_name
from lambda_bridge import snapshot, vocabulary
from tests.support.paths import ROOT

TEMPLATE = ROOT / "platform" / "authorizer.yaml"


def test_level_is_the_vocabulary_in_order():
    assert [level.label for level in Level] == list(vocabulary.LEVELS)
    assert sorted(Level) == list(Level)  # ordered: a higher level is a larger number
    assert {level.label: level.code for level in Level} == vocabulary.LEVEL_CODES
    # The stored values since 0001_initial; changing them would need a data migration.
    assert [level.value for level in Level] == [10, 20, 30, 40]
    assert SHARE_LEVELS == [(10, "view"), (20, "control"), (30, "manage")]


def test_snapshot_codes_follow_the_level():
    assert {int(level): code for level, code in LEVEL_CODES.items()} == {10: 1, 20: 2, 30: 3, 40: 4}
    assert all(snapshot.LEVEL_NAMES[LEVEL_CODES[level]] == level.label for level in Level)


def test_api_level_choices_are_the_vocabulary():
    assert list(serializers.LevelField().choices) == list(vocabulary.SHARE_LEVELS)
    assert list(serializers.LevelField(with_owner=True).choices) == list(vocabulary.LEVELS)
    assert [name for name, _ in filters.LEVEL_CHOICES] == list(vocabulary.LEVELS)
    assert [name for name, _ in filters.SHARE_LEVEL_CHOICES] == list(vocabulary.SHARE_LEVELS)


def test_thing_name_validator_and_constraint_use_the_vocabulary():
    assert THING_NAME_RE.pattern == rf"^{vocabulary.THING_NAME}\Z"
    assert validate_thing_name.regex.pattern == THING_NAME_RE.pattern
    (constraint,) = [c for c in Device._meta.constraints if c.name == "device_thing_name_valid"]
    assert constraint.condition.children == [("thing_name__regex", THING_NAME_RE.pattern)]


@pytest.mark.django_db
def test_the_migrations_hold_the_models_thing_name_rules():
    state = MigrationLoader(connection).project_state().models["devices", "device"]
    (migrated,) = [c for c in state.options["constraints"] if c.name == "device_thing_name_valid"]
    (model,) = [c for c in Device._meta.constraints if c.name == "device_thing_name_valid"]
    assert migrated == model
    (validator,) = [v for v in state.fields["thing_name"].validators if isinstance(v, RegexValidator)]
    assert validator.regex.pattern == THING_NAME_RE.pattern


def test_the_templates_token_key_name_pattern_is_the_vocabulary():
    template, errors = decode_str(TEMPLATE.read_text())
    assert not errors
    parameter = template["Parameters"]["TokenKeyName"]
    assert parameter["AllowedPattern"] == f"^{vocabulary.TOKEN_KEY_NAME}$"
    assert re.fullmatch(vocabulary.TOKEN_KEY_NAME, parameter["Default"])
