"""Operating the signing keys: `manage.py signing_keys`, the beat task and
the console page."""
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from authz import tasks
from authz.models import SigningKey
from authz.tokens import rotation, signing_keys
from devices.models import AuditEvent
from lambda_bridge import keys
from tests.authz.signing_helpers import assert_converged
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("signing_keys", *args, stdout=out, stderr=out)
    return out.getvalue()


def refused(*args) -> CommandError:
    with pytest.raises(CommandError) as error:
        run(*args)
    assert "\n" not in str(error.value)
    return error.value


def test_status_before_anything_exists():
    out = run("status")
    assert "No signing keys yet" in out and "Next: bootstrap A now" in out


def test_rotate_bootstraps_and_status_shows_the_table(table):
    assert "bootstrapped slot A" in run("rotate")
    key = SigningKey.objects.get()
    out = run("status")
    header, row = out.splitlines()[:2]
    assert header.split() == ["SLOT", "KID", "COMPACT", "STATE", "BITS", "AGE", "NEXT", "STEP", "WHEN"]
    assert row.split()[:5] == ["A", key.kid, key.compact_kid, "active", "2048"]
    assert len(key.compact_kid) == 4
    assert "stage successor in B" in row
    assert "in sync" in out and "(none configured: DynamoDB only)" in out
    assert AuditEvent.objects.get(action="signing_key.bootstrap").source == "command"


def test_status_shows_a_key_without_a_compact_half(table):
    run("rotate")
    SigningKey.objects.update(compact_kid="", compact_public="", compact_private_encrypted="")
    row = run("status").splitlines()[1]
    assert row.split()[:5] == ["A", SigningKey.objects.get().kid, "-", "active", "2048"]


def test_early_steps_are_refused_with_the_reason_and_force_takes_them(table):
    run("rotate")
    assert "staged key" in run("stage")

    error = refused("promote")
    assert error.returncode == 1 and "not yet safe to promote B" in str(error) and "--force" in str(error)
    assert "promoted" in run("promote", "--force")

    error = refused("retire")
    assert "not yet safe to retire A" in str(error)
    assert "retired" in run("retire", "--force")
    assert {k.slot: k.state for k in SigningKey.objects.exclude(state=keys.RETIRED)} == {"B": keys.ACTIVE}
    assert_converged(table)


def test_dry_run_changes_nothing(table):
    assert "would bootstrap A now" in run("rotate", "--dry-run")
    assert not SigningKey.objects.exists() and not AuditEvent.objects.exists()
    run("rotate")
    assert "would stage B now" in run("stage", "--dry-run")
    assert SigningKey.objects.count() == 1
    assert "nothing due; next: stage B at" in run("rotate", "--dry-run")


def test_rotation_in_progress_exits_with_tempfail(monkeypatch):
    def busy(**kwargs):
        raise signing_keys.RotationInProgress("rotation in progress: another runner holds the signing-key lock")
    monkeypatch.setattr("authz.management.commands.signing_keys.STEPS", {"rotate": busy})
    error = refused("rotate")
    assert error.returncode == 75 and "rotation in progress" in str(error)


def test_force_only_where_there_is_a_delay():
    assert "--force does not apply to stage" in str(refused("stage", "--force"))


def test_configuration_errors_are_one_line(table, settings):
    settings.SIGNING_KEY_BITS = 1024
    assert "at least 2048 bits" in str(refused("rotate"))


def test_command_output_never_shows_private_material(table, capsys, caplog):
    outputs = [run("rotate"), run("stage"), run("promote", "--force"), run("status")]
    secrets = [SigningKey.objects.get(slot=s).private_key_encrypted for s in "AB"]
    outputs += [run("retire", "--force"), run("status"), capsys.readouterr().out, caplog.text]
    text = "\n".join(outputs)
    assert "PRIVATE" not in text and not [s for s in secrets if s in text]


# --- beat -------------------------------------------------------------------------


def test_beat_runs_the_rotation_hourly(settings, table):
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "authz.tasks.rotate_signing_keys")
    assert entry["schedule"] == 3600

    assert "bootstrapped" in tasks.rotate_signing_keys()
    assert "nothing due" in tasks.rotate_signing_keys()
    assert AuditEvent.objects.get(action="signing_key.bootstrap").source == "beat"
    assert AuditEvent.objects.get(action="signing_key.bootstrap").actor is None


def test_beat_task_reports_a_busy_lock_without_failing(monkeypatch):
    def busy(**kwargs):
        raise signing_keys.RotationInProgress("rotation in progress")
    monkeypatch.setattr(rotation, "rotate", busy)
    assert tasks.rotate_signing_keys() == "busy"


# --- console ----------------------------------------------------------------------


def test_console_lists_keys_and_the_next_step_for_superusers_only(client, table, world):
    run("rotate")
    run("stage")
    key = SigningKey.objects.get(slot="A")
    url = reverse("admin:authz_signingkey_changelist")

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(url).content.decode()
    assert key.kid in page and "Next step: promote B" in page and "retiring at the promote of B" in page
    assert key.private_key_encrypted not in page and "PRIVATE" not in page
    detail = client.get(reverse("admin:authz_signingkey_change", args=[key.pk])).content.decode()
    assert "BEGIN PUBLIC KEY" in detail and key.private_key_encrypted not in detail and "PRIVATE" not in detail
    assert client.post(reverse("admin:authz_signingkey_delete", args=[key.pk])).status_code == 403

    client.force_login(world.admin)  # a tenant admin: the platform's keys are not theirs to see
    assert client.get(url).status_code == 403
