from django.contrib import admin, messages
from django.db.models import CharField, F, OuterRef, Subquery
from django.db.models.functions import Cast
from django.utils import timezone

from devices.admin import ReadOnlyAdminMixin, ReadOnlyTenantAdmin
from devices.models import User

from . import outbox, signing
from .models import PrincipalSync, SigningKey


class LaggingFilter(admin.SimpleListFilter):
    title = "sync"
    parameter_name = "sync"

    def lookups(self, request, model_admin):
        return [("lagging", "lagging"), ("failing", "failing"), ("current", "in sync")]

    def queryset(self, request, queryset):
        if self.value() == "lagging":
            return queryset.lagging()
        if self.value() == "failing":
            return queryset.lagging().exclude(last_error="")
        if self.value() == "current":
            return queryset.filter(pushed_version__gte=F("desired_version"))
        return queryset


@admin.register(PrincipalSync)
class PrincipalSyncAdmin(ReadOnlyTenantAdmin):
    list_display = ["key", "tenant", "kind", "who", "desired_version", "pushed_version", "in_sync", "attempts",
                    "last_error", "changed_at", "pushed_at"]
    list_filter = [LaggingFilter, ("tenant", admin.RelatedOnlyFieldListFilter), "kind"]
    search_fields = ["principal"]
    actions = ["resync_selected"]

    def get_queryset(self, request):
        # The principal column holds ids as text; match them as text, in the list query itself.
        email = User.objects.annotate(id_text=Cast("pk", CharField())).filter(id_text=OuterRef("principal"))
        return super().get_queryset(request).select_related("tenant").annotate(
            email=Subquery(email.values("email")[:1]))

    @admin.display(description="principal")
    def who(self, obj):
        if obj.kind == PrincipalSync.Kind.USER:
            return obj.email or "(deleted user)"
        return obj.principal

    @admin.display(boolean=True)
    def in_sync(self, obj):
        return obj.in_sync

    @admin.action(description="Resync selected snapshots (push them again)")
    def resync_selected(self, request, queryset):
        ids = outbox.resync(actor=request.user, rows=list(queryset.select_related("tenant")))
        self.message_user(request, f"Queued {len(ids)} snapshot(s) for a push.", messages.SUCCESS)


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Platform-wide keys: superusers only, read-only, never the private half.
    Rotation runs from beat and `manage.py signing_keys`."""

    list_display = ["slot", "kid", "state", "bits", "age", "next_step", "created_at", "published_at",
                    "activated_at", "retiring_at", "retired_at"]
    list_filter = ["state", "slot"]
    search_fields = ["kid"]
    fields = ["slot", "kid", "state", "bits", "public_pem", "created_at", "staged_at", "published_at",
              "activated_at", "retiring_at", "retired_at"]
    readonly_fields = fields

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def get_queryset(self, request):
        return super().get_queryset(request).defer("private_key_encrypted")

    def changelist_view(self, request, extra_context=None):
        if request.method == "GET" and self.has_view_permission(request):
            st = signing.status()
            sync = "published" if st.in_sync else "NOT YET PUBLISHED"
            self.message_user(request, f"Next step: {st.next.describe(st.now)}. Key set v{st.desired_version} "
                                       f"{sync}{': ' + st.last_error if st.last_error else ''}.", messages.INFO)
        return super().changelist_view(request, extra_context)

    @admin.display(description="age")
    def age(self, obj):
        return signing.format_duration(timezone.now() - obj.created_at)

    @admin.display(description="next step")
    def next_step(self, obj):
        row = next((k for k in signing.status(history=0).keys if k.kid == obj.kid), None)
        if row is None or not row.next_step:
            return "-"
        return f"{row.next_step} at {signing.format_when(row.next_at)}" if row.next_at else row.next_step
