from django.contrib import admin, messages
from django.db.models import CharField, F, OuterRef, Subquery
from django.db.models.functions import Cast

from devices.admin import ReadOnlyTenantAdmin
from devices.models import User

from . import outbox
from .models import PrincipalSync


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
