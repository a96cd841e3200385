"""Operate the token-signing keys: show them, or take a rotation step."""
from django.core.management.base import BaseCommand, CommandError

from authz.tokens import rotation, signing_keys
from devices import audit

STEPS = {"stage": rotation.stage, "promote": rotation.promote, "retire": rotation.retire, "rotate": rotation.rotate}
FORCEABLE = {"promote", "retire", "rotate"}
# EX_TEMPFAIL: another runner is rotating; a later retry will do.
BUSY_EXIT = 75


class Command(BaseCommand):
    help = ("Token-signing keys (slots A and B): `status`, or one rotation step: `stage` a new key, `promote` "
            "it, `retire` the old one, or `rotate` (whatever is due, bootstrapping slot A on the first run).")

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", *STEPS])
        parser.add_argument("--dry-run", action="store_true", help="Say what the step would do; change nothing.")
        parser.add_argument("--force", action="store_true",
                            help="Take promote/retire (or rotate's next step) before its safety delay is up.")

    def handle(self, *args, action, dry_run, force, **options):
        if action == "status":
            return self._status()
        if force and action not in FORCEABLE:
            raise CommandError(f"--force does not apply to {action}")
        kwargs = {"force": force} if action in FORCEABLE else {}
        try:
            with audit.origin("command"):
                result = STEPS[action](actor=None, dry_run=dry_run, **kwargs)
        except signing_keys.RotationInProgress as exc:
            raise CommandError(str(exc), returncode=BUSY_EXIT) from None
        except signing_keys.SigningError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(result.message)
        if result.published_version:
            self.stdout.write(f"published key set version {result.published_version}")

    def _status(self):
        st = rotation.status()
        # COMPACT: the compact half's kid, "-" for a key made before compact tokens.
        header = ("SLOT", "KID", "COMPACT", "STATE", "BITS", "AGE", "NEXT STEP", "WHEN")
        rows = [(k.slot, k.kid, k.compact_kid or "-", k.state, str(k.bits), rotation.format_duration(k.age),
                 k.next_step or "-",
                 self._when(k.next_at, st.now) if k.next_step else "-") for k in st.keys]
        if not rows:
            self.stdout.write("No signing keys yet; `signing_keys rotate` bootstraps slot A.")
        else:
            widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
            for row in [header, *rows]:
                self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        self.stdout.write("")
        self.stdout.write(f"Next: {st.next.describe(st.now)}")
        sync = "in sync" if st.in_sync else "LAGGING (the next run publishes it)"
        self.stdout.write(f"Published: version {st.pushed_version} of {st.desired_version}, {sync}; "
                          f"authorizer: {st.authorizer or '(none configured: DynamoDB only)'}")
        if st.last_error:
            self.stdout.write(f"Last publish error: {st.last_error}")

    @staticmethod
    def _when(at, now) -> str:
        if at is None:
            return "-"
        if at <= now:
            return "now"
        return f"{rotation.format_when(at)} (in {rotation.format_duration(at - now)})"
