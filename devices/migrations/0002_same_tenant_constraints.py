"""Composite foreign keys that make "same tenant everywhere" a database fact.

Each reference between tenant-owned rows also carries the tenant id, so a
share can never point at another tenant's device, a device at another
tenant's group or type, and a device or group owner must be a member of the
tenant. Django cannot express composite foreign keys, hence raw SQL; SQLite
(the embedded `make run` default) cannot add constraints to existing tables,
so there the services' checks stand alone.
"""
from django.db import migrations

UNIQUE_TARGETS = {
    "devices_device": "device_tenant_id_uniq",
    "devices_devicegroup": "devicegroup_tenant_id_uniq",
    "devices_devicetype": "devicetype_tenant_id_uniq",
    "devices_share": "share_tenant_id_uniq",
}

# (table, name, local column, referenced table, referenced column)
REFERENCES = [
    ("devices_device", "device_type_same_tenant", "device_type_id", "devices_devicetype", "id"),
    ("devices_device", "device_group_same_tenant", "group_id", "devices_devicegroup", "id"),
    ("devices_device", "device_owner_is_member", "owner_id", "devices_membership", "user_id"),
    ("devices_devicegroup", "group_owner_is_member", "owner_id", "devices_membership", "user_id"),
    ("devices_share", "share_device_same_tenant", "device_id", "devices_device", "id"),
    ("devices_share", "share_group_same_tenant", "group_id", "devices_devicegroup", "id"),
    ("devices_share", "share_parent_same_tenant", "parent_id", "devices_share", "id"),
    ("devices_invitation", "invitation_device_same_tenant", "device_id", "devices_device", "id"),
    ("devices_invitation", "invitation_group_same_tenant", "group_id", "devices_devicegroup", "id"),
    ("devices_invitation", "invitation_share_same_tenant", "share_id", "devices_share", "id"),
]


def add_constraints(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, name in UNIQUE_TARGETS.items():
        schema_editor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE (tenant_id, id)")
    for table, name, column, ref_table, ref_column in REFERENCES:
        # Deferred so that Django's own delete/update ordering inside one
        # transaction never trips over an intermediate state.
        schema_editor.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (tenant_id, {column}) "
            f"REFERENCES {ref_table} (tenant_id, {ref_column}) DEFERRABLE INITIALLY DEFERRED"
        )


def drop_constraints(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, name, *_ in REFERENCES:
        schema_editor.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
    for table, name in UNIQUE_TARGETS.items():
        schema_editor.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("devices", "0001_initial")]
    operations = [migrations.RunPython(add_constraints, drop_constraints)]
