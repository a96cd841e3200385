"""Principal snapshots computed from the database.

A fixed number of queries per tenant, however many principals and devices:
a push of a thousand principals costs the same handful of queries as one.
"""
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from authz.live.cutoffs import cutoffs_of
from devices import schedules
from devices.models import Device, Level, Membership, Share
from lambda_bridge import snapshot
from lambda_bridge.schedule import Schedule
from lambda_bridge.snapshot import Entry, Snapshot

LEVEL_CODES = {level: level.code for level in Level}


@dataclass(frozen=True)
class Principal:
    tenant_id: int
    kind: str
    principal: str
    version: int


def compile_snapshots(principals: list[Principal], *, now: datetime) -> dict[tuple, Snapshot]:
    """(tenant_id, kind, principal) → its Snapshot at `now`."""
    by_tenant: dict[tuple[int, str], list[Principal]] = defaultdict(list)
    for p in principals:
        by_tenant[(p.tenant_id, p.kind)].append(p)
    generated_at = int(now.timestamp())
    out = {}
    for (tenant_id, kind), group in by_tenant.items():
        names = {p.principal for p in group}
        if kind == snapshot.USER:
            found = _user_entries(tenant_id, {int(n) for n in names if n.isdigit()}, now)
            found = {str(user_id): entries for user_id, entries in found.items()}
        else:
            found = _device_entries(tenant_id, names)
        cutoffs = cutoffs_of(tenant_id=tenant_id, kind=kind, principals=names)
        for p in group:
            entries = found.get(p.principal)
            out[(tenant_id, kind, p.principal)] = Snapshot(
                kind=kind, tenant=tenant_id, principal=p.principal, version=p.version,
                generated_at=generated_at, entries=tuple(entries or ()), gone=entries is None,
                cutoff=cutoffs.get(p.principal),
            )
    return out


def _user_entries(tenant_id: int, user_ids: set[int], now: datetime) -> dict[int, list[Entry]]:
    """Every device each user reaches in the tenant. Users who are not active
    members are absent from the result (their snapshot is a tombstone)."""
    members = set(
        Membership.objects.filter(tenant_id=tenant_id, user_id__in=user_ids, user__is_active=True)
        .values_list("user_id", flat=True)
    )
    grants: dict[int, dict[str, list[Entry]]] = {user_id: defaultdict(list) for user_id in members}

    owned = Device.objects.filter(tenant_id=tenant_id, owner_id__in=members)
    for owner_id, thing, group_id in owned.values_list("owner_id", "thing_name", "group_id"):
        grants[owner_id][thing].append(Entry(thing, snapshot.OWNER, group=group_id))

    # Revoked and ended shares never reach a snapshot; ones that start later do,
    # with their start, so the authorizer needs no push when they begin.
    shares = Share.objects.filter(tenant_id=tenant_id, grantee_id__in=members, revoked_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    terms = ("level", "starts_at", "expires_at", "schedule", "pk")
    direct = shares.filter(device__isnull=False).values_list(
        "grantee_id", "device__thing_name", "device__group_id", *terms
    )
    via_group = shares.filter(group__isnull=False, group__devices__isnull=False).values_list(
        "grantee_id", "group__devices__thing_name", "group_id", *terms
    )
    # A group share comes once per device of its group: its schedule is read once.
    read: dict[int, Schedule | schedules.Unreadable | None] = {}
    for rows in (direct, via_group):
        for grantee_id, thing, group_id, level, starts_at, expires_at, stored, share_id in rows:
            if share_id not in read:
                read[share_id] = schedules.read(stored, holder=f"Share {share_id}")
            schedule = read[share_id]
            if isinstance(schedule, schedules.Unreadable):
                continue  # less access, never a failed push for everyone in the batch
            grants[grantee_id][thing].append(Entry(
                thing, LEVEL_CODES[level],
                # Round towards less access: start late, end early.
                not_before=math.ceil(starts_at.timestamp()) if starts_at and starts_at > now else None,
                expires=math.floor(expires_at.timestamp()) if expires_at else None,
                group=group_id,
                schedule=schedule,
            ))
    return {user_id: [e for entries in by_thing.values() for e in _undominated(entries)]
            for user_id, by_thing in grants.items()}


def _undominated(entries: list[Entry]) -> list[Entry]:
    """Drop each entry that another one covers: at least its level, over at
    least its window. Ownership covers everything."""
    kept: list[Entry] = []
    for entry in sorted(set(entries), key=_strength, reverse=True):
        if not any(_covers(k, entry) for k in kept):
            kept.append(entry)
    return kept


def _strength(entry: Entry):
    return (entry.level, -(entry.not_before or 0), entry.expires or math.inf, entry.schedule is None)


def _covers(a: Entry, b: Entry) -> bool:
    # The snapshot-entry twin of devices.services.terms.GrantTerms.covers (there
    # on datetimes and with the re-share right, here on epoch seconds).
    starts_no_later = a.not_before is None or (b.not_before is not None and a.not_before <= b.not_before)
    ends_no_earlier = a.expires is None or (b.expires is not None and a.expires >= b.expires)
    # Schedules compare only as equal: an unscheduled entry covers a
    # scheduled one, never the reverse (GrantTerms.covers is exact for one zone).
    same_hours = a.schedule is None or a.schedule == b.schedule
    return a.level >= b.level and starts_no_later and ends_no_earlier and same_hours


def _device_entries(tenant_id: int, thing_names: set[str]) -> dict[str, list[Entry]]:
    """A device principal may act as itself; a deleted device as nothing."""
    existing = Device.objects.filter(tenant_id=tenant_id, thing_name__in=thing_names)
    return {thing: [Entry(thing, snapshot.OWNER)] for thing in existing.values_list("thing_name", flat=True)}
