from django.contrib import admin

from .forms import AdminLoginForm
from .models import APIToken, AuditEntry, Membership, Team

admin.site.login_form = AdminLoginForm  # says how long to wait when the login gate refuses


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["time", "actor_name", "action", "object_type", "object_repr"]
    list_filter = ["action", "object_type"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(APIToken)
class APITokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "description", "read_only", "expires", "last_used"]
    readonly_fields = ["prefix", "digest"]

    def has_add_permission(self, request):
        return False  # keys are made in the portal, where they are shown once
