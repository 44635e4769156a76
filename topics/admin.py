from django.contrib import admin

from .models import EventStore, Tag, Topic


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "store", "lifecycle"]
    list_filter = ["lifecycle", "store", "team"]
    search_fields = ["name", "description"]
    filter_horizontal = ["tags"]


admin.site.register(EventStore)
admin.site.register(Tag)
