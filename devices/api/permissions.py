"""Read-side rights the API needs before it calls a service.

The services stay the authority on every write; these checks only decide
what a caller may *read* (access lists, the audit log) and make a refusal
come before anything that would reveal other people's data.
"""
from django.core.exceptions import PermissionDenied

from devices.models import Device, DeviceGroup, Level, User
from devices.selectors import held_level, owns_or_administers, reshare_grant


def may_share(user: User, target: Device | DeviceGroup) -> bool:
    """Mirrors who `services.create_share` lets through, without taking locks."""
    if owns_or_administers(user, target):
        return True
    if isinstance(target, Device):
        return reshare_grant(user=user, device=target) is not None
    return reshare_grant(user=user, group=target) is not None


def may_oversee(user: User, device: Device) -> bool:
    """Who sees everyone's access to a device and its audit log: the owner,
    tenant admins, and whoever holds the manage level on it (at any hour)."""
    if owns_or_administers(user, device):
        return True
    level = held_level(user=user, device=device)
    return level is not None and level >= Level.MANAGE


def require(condition: bool, message: str) -> None:
    if not condition:
        raise PermissionDenied(message)
