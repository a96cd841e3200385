"""Crash at any point of any step, then run again: the database and the key
item converge. Two runners at once: one rotates, the other is told so."""
import threading

import pytest
from django.db import connection

from authz.models import SigningKey, SigningKeyring
from authz.tokens import publication, rotation, signing_keys
from devices import audit
from lambda_bridge import keys
from tests.authz.signing_helpers import Clock, assert_converged, keyring
from tests.support.services import require


class Crash(Exception):
    """Stands in for the process dying: nothing catches it."""


def crash(*args, **kwargs):
    raise Crash


def before_step(step: str, clock: Clock) -> None:
    """Walk the machine to just before `step`."""
    if step == rotation.BOOTSTRAP:
        return
    rotation.rotate(actor=None, now=clock.now)
    if step == rotation.STAGE:
        return
    rotation.stage(actor=None, now=clock.now)
    clock.past_propagation()
    if step == rotation.PROMOTE:
        return
    rotation.promote(actor=None, now=clock.now)
    clock.past_token_lifetime()


EXPECTED = {
    rotation.BOOTSTRAP: {"A": keys.ACTIVE},
    rotation.STAGE: {"A": keys.ACTIVE, "B": keys.STAGED},
    rotation.PROMOTE: {"A": keys.RETIRING, "B": keys.ACTIVE},
    rotation.RETIRE: {"B": keys.ACTIVE},
}
STEP_FUNCTIONS = {rotation.BOOTSTRAP: rotation.bootstrap, rotation.STAGE: rotation.stage,
                  rotation.PROMOTE: rotation.promote, rotation.RETIRE: rotation.retire}

# Where the process dies:
#   in_step:          inside the step's transaction, after its audit event (rolls back)
#   before_publish:   the step committed; DynamoDB and AWS IoT never heard of it
#   after_publish:    DynamoDB and AWS IoT have it; the database does not know
CRASH_POINTS = {
    "in_step": (audit, "record"),
    "before_publish": (publication, "_write_item"),
    "after_publish": (publication, "_mark_published"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("point", CRASH_POINTS)
@pytest.mark.parametrize("step", EXPECTED)
def test_rerun_after_a_crash_converges(table, monkeypatch, step, point):
    clock = Clock()
    before_step(step, clock)
    before = keyring(table)
    target, name = CRASH_POINTS[point]
    if point == "in_step":
        real = audit.record

        def record(**kwargs):
            real(**kwargs)
            if kwargs["action"] == f"signing_key.{step}":
                raise Crash
        monkeypatch.setattr(target, name, record)
    else:
        monkeypatch.setattr(target, name, crash)

    with pytest.raises(Crash):
        STEP_FUNCTIONS[step](actor=None, now=clock.now)
    monkeypatch.undo()

    ring_row = SigningKeyring.objects.filter(pk=1).first()
    if point == "in_step":
        assert keyring(table) == before  # nothing committed, nothing published
    elif point == "before_publish":
        assert ring_row.pushed_version < ring_row.desired_version
        assert keyring(table) == before
    else:
        assert ring_row.pushed_version < ring_row.desired_version
        assert keyring(table).version == ring_row.desired_version  # the item is already there

    # Whatever runs next (the beat's rotate, or the operator repeating the step) finishes the job.
    rotation.rotate(actor=None, now=clock.now)
    if point == "in_step":
        STEP_FUNCTIONS[step](actor=None, now=clock.now)
    ring = assert_converged(table)
    assert {k.slot: k.state for k in SigningKey.objects.exclude(state=keys.RETIRED)} == EXPECTED[step]
    assert {n: s.state for n, s in ring.slots.items()} == EXPECTED[step]
    # Running again changes nothing.
    assert rotation.rotate(actor=None, now=clock.now).step is None
    assert keyring(table) == ring


@pytest.mark.django_db
def test_a_crash_in_the_step_repeated_by_the_same_step_converges(table, monkeypatch):
    clock = Clock()
    before_step(rotation.STAGE, clock)
    monkeypatch.setattr(publication, "_write_item", crash)
    with pytest.raises(Crash):
        rotation.stage(actor=None, now=clock.now)
    monkeypatch.undo()

    again = rotation.stage(actor=None, now=clock.now)
    assert not again.changed and again.published_version  # no second key; the first one published
    assert SigningKey.objects.count() == 2
    assert_converged(table)


# --- two runners ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("held_in", ["step", "publish"])
def test_two_concurrent_rotations_one_proceeds_the_other_reports_in_progress(table, monkeypatch, held_in):
    require(connection.vendor == "postgresql", "PostgreSQL (row locks)")
    holding, release = threading.Event(), threading.Event()
    target, name = (signing_keys, "new_key") if held_in == "step" else (publication, "_write_item")
    real = getattr(target, name)

    def slow(*args, **kwargs):
        holding.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, slow)
    outcomes = {}

    def run(who):
        try:
            outcomes[who] = rotation.rotate(actor=None)
        except Exception as exc:  # noqa: BLE001 - reported to the test thread
            outcomes[who] = exc
        finally:
            connection.close()

    first = threading.Thread(target=run, args=("first",))
    first.start()
    try:
        assert holding.wait(30), "the first runner never reached the lock-holding part"
        second = threading.Thread(target=run, args=("second",))
        second.start()
        second.join(30)
    finally:
        release.set()
        first.join(30)

    assert isinstance(outcomes["second"], signing_keys.RotationInProgress), outcomes
    assert "rotation in progress" in str(outcomes["second"])
    assert isinstance(outcomes["first"], rotation.StepResult) and outcomes["first"].step == rotation.BOOTSTRAP
    assert SigningKey.objects.count() == 1
    assert_converged(table)
