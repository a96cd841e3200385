"""The console base every app's admin builds on: tenant scoping, writes
through services, read-only records.

Querysets come from each model's ``administered_by`` (the console side of the
``visible_to`` rule in ``devices.models``); every write is a service call,
run while the form validates so that a refused write shows up as a form error
and nothing is saved (docs/decisions/0001-console-writes-through-services.md).
It lives in the project package so that authz's admin does not import
devices' (docs/decisions/0002-shared-web-plumbing.md).
"""
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse

from devices import selectors
from devices.models import Tenant

# Bulk delete would skip each deletion's own checks and error messages;
# objects are deleted one at a time from their own page.
admin.site.disable_action("delete_selected")


def administers_any(user) -> bool:
    return user.is_active and user.is_staff and Tenant.objects.administered_by(user).exists()


class ServiceForm(forms.ModelForm):
    """Calls ``admin.perform`` once the fields are valid; its errors become form errors."""

    admin_instance = None
    request = None

    def _post_clean(self):
        super()._post_clean()
        if self.errors:
            return
        try:
            # A savepoint: a refused write leaves nothing behind.
            with transaction.atomic():
                self.instance = self.admin_instance.perform(self.request, self, change=not self.instance._state.adding)
        except ValidationError as error:
            self._add_service_error(error)
        except PermissionDenied as error:
            self.add_error(None, str(error) or "You are not allowed to do this.")

    def _add_service_error(self, error: ValidationError) -> None:
        if hasattr(error, "error_dict"):
            for field, errors in error.error_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        else:
            self.add_error(None, error)


class ServiceAdminMixin:
    """Admin writes are service calls made from ``ServiceForm`` validation."""

    form = ServiceForm

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"admin_instance": self, "request": request})

    def get_queryset(self, request):
        # The console administers: a tenant admin who is also a plain member
        # (or sharee) elsewhere sees nothing of that other tenant here.
        return self.model.objects.administered_by(request.user)

    def get_object(self, request, object_id, from_field=None):
        # Another tenant's object answers 404, exactly like one that does not exist.
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object.")
        return obj

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # The service write happens while the form validates; if anything
        # else on the page (an inline) is invalid, the page comes back with
        # errors and the write must not stay.
        with transaction.atomic():
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if request.method == "POST" and (getattr(response, "context_data", None) or {}).get("errors"):
                transaction.set_rollback(True)
        return response

    def perform(self, request, form, change):
        raise NotImplementedError

    def save_form(self, request, form, change):
        return form.instance

    def save_model(self, request, obj, form, change):
        """Already saved by ``perform`` during validation."""

    def save_related(self, request, form, formsets, change):
        # Inlines are read-only: commit=False writes nothing, it only fills in
        # the bookkeeping that the admin's change message reads.
        for formset in formsets:
            formset.save(commit=False)

    def fresh(self, form):
        return type(form.instance).objects.get(pk=form.instance.pk)


class TenantScopedAdmin(ServiceAdminMixin, admin.ModelAdmin):
    def _tenant_id(self, obj):
        return obj.tenant_id

    def _administers(self, request, obj) -> bool:
        if obj is None:
            return request.user.is_superuser or administers_any(request.user)
        return request.user.is_staff and selectors.is_tenant_admin(user=request.user, tenant_id=self._tenant_id(obj))

    def has_module_permission(self, request):
        return self._administers(request, None)

    def has_view_permission(self, request, obj=None):
        return self._administers(request, None)

    def has_add_permission(self, request):
        return self._administers(request, None)

    def has_change_permission(self, request, obj=None):
        return self._administers(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._administers(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        model = db_field.related_model
        if hasattr(model.objects, "administered_by"):
            kwargs["queryset"] = model.objects.administered_by(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is not None and isinstance(field.widget, RelatedFieldWidgetWrapper):
            # Editing or deleting a related object from inside another form
            # hides what the change means; they have their own pages.
            field.widget.can_change_related = field.widget.can_delete_related = False
        return field

    def get_deleted_objects(self, objs, request):
        # Dependent rows (shares, invitations) go with the object through the
        # service, which checks the rights; Django's per-model delete
        # permissions do not apply to them.
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as error:
            self.message_user(request, f"Not deleted: {error_message(error)}", messages.ERROR)
            return redirect(reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[object_id]))

    def delete_model(self, request, obj):
        self.remove(request, obj)

    def remove(self, request, obj):
        raise NotImplementedError


class ReadOnlyAdminMixin:
    """Records the console shows and never edits (actions may still act on them)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyTenantAdmin(ReadOnlyAdminMixin, TenantScopedAdmin):
    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]


class ReadOnlyInline(admin.TabularInline):
    """Shown on change pages only; rows are changed through their own pages."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_view_permission(self, request, obj=None):
        # The parent page is already scoped; tenant admins hold no Django model permissions.
        return request.user.is_superuser or administers_any(request.user)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def error_message(error) -> str:
    """A refused write as one line for the console's message bar."""
    return "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
