"""A thing name ends where the string ends: Python's `$` would also accept a
name with a trailing newline, which is no AWS IoT thing name."""
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from devices.models import Device, validate_thing_name


@pytest.mark.parametrize("name", ["lamp\n", "lamp\nx", "\nlamp"])
def test_the_validator_refuses_a_newline_anywhere(name):
    with pytest.raises(ValidationError):
        validate_thing_name(name)


def test_the_database_refuses_a_trailing_newline(world):
    with pytest.raises(IntegrityError), transaction.atomic():
        Device.objects.filter(pk=world.lamp.pk).update(thing_name="lamp\n")

    world.lamp.refresh_from_db()
    assert world.lamp.thing_name != "lamp\n"


def test_a_plain_name_still_passes(world):
    validate_thing_name("lamp-01:kitchen_2")
    Device.objects.filter(pk=world.lamp.pk).update(thing_name="lamp-01:kitchen_2")
    world.lamp.refresh_from_db()
    assert world.lamp.thing_name == "lamp-01:kitchen_2"
