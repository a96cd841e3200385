"""A share and an invitation carry the same terms, checked in one place."""
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from devices import services
from devices.models import Invitation, Level, Share
from devices.services.terms import GrantTerms

TERM_CONSTRAINTS = {"level_valid", "window_ordered", "reshare_needs_manage"}


@pytest.mark.parametrize("model", [Share, Invitation])
def test_both_grants_keep_the_term_constraints_under_their_own_names(model):
    names = {constraint.name for constraint in model._meta.constraints}
    prefix = model._meta.model_name
    assert {f"{prefix}_{suffix}" for suffix in TERM_CONSTRAINTS} <= names


def test_the_level_constraint_allows_exactly_the_grantable_levels():
    (constraint,) = [c for c in Share._meta.constraints if c.name == "share_level_valid"]
    assert sorted(dict(constraint.condition.children)["level__in"]) == [Level.VIEW, Level.CONTROL, Level.MANAGE]


def test_terms_read_back_from_the_rows_they_made(world):
    expires = timezone.now() + timedelta(days=2)
    share = services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, level="manage",
                                  expires_at=expires, can_reshare=True)
    invitation = services.create_invitation(actor=world.owner, email="new@example.com", device=world.lamp,
                                            level="manage", expires_at=expires, can_reshare=True)
    expected = GrantTerms(level=Level.MANAGE, expires_at=expires, can_reshare=True)
    assert GrantTerms.of(share) == expected
    assert GrantTerms.of(invitation) == expected


def test_an_unknown_level_names_every_grantable_level(world):
    with pytest.raises(ValidationError) as caught:
        services.create_share(actor=world.owner, grantee=world.alice, device=world.lamp, level="admin")
    labels = [level.label for level in Level if level != Level.OWNER]
    assert caught.value.message_dict["level"] == [f"Level must be one of {', '.join(labels)}."]
    assert labels == ["view", "control", "manage"]


def test_a_reshare_right_needs_the_manage_level():
    with pytest.raises(ValidationError) as caught:
        GrantTerms(level=Level.CONTROL, can_reshare=True).check(parent=None, now=timezone.now())
    assert set(caught.value.message_dict) == {"can_reshare"}
