from django.db import transaction
from rest_framework import serializers

from meshadmin.api.serializers import MeshModelSerializer

from ..engines import check_store_move
from ..models import EventStore, Tag, Topic


class EventStoreSerializer(MeshModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:eventstore-detail")

    class Meta:
        model = EventStore
        fields = ["id", "url", "display", "name", "kind", "connection", "description", "created", "updated"]


class TagListField(serializers.ListField):
    """Tags by name; unknown ones are created when the topic is saved (as in the form)."""

    child = serializers.SlugField(max_length=50)

    def to_representation(self, data):
        return [tag.name for tag in data.all()]

    def to_internal_value(self, data):
        return sorted({name.lower() for name in super().to_internal_value(data)})


class TopicSerializer(MeshModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:topic-detail")
    tags = TagListField(required=False)

    class Meta:
        model = Topic
        fields = ["id", "url", "display", "name", "description", "team", "store", "tags", "lifecycle", "sunset",
                  "retention_max_age", "retention_max_length", "data_schema", "example_event",
                  "created", "updated"]

    def validate_store(self, store):
        problem = check_store_move(self.instance if self.instance is not None else Topic(), store)
        if problem:
            raise serializers.ValidationError(problem)
        return store

    def _save(self, save, *args, tags):
        with transaction.atomic():
            topic = save(*args)
            if tags is not None:
                topic.tags.set([Tag.objects.get_or_create(name=name)[0] for name in tags])
        return topic

    def create(self, validated_data):
        tags = validated_data.pop("tags", None)
        return self._save(super().create, validated_data, tags=tags)

    def update(self, instance, validated_data):
        tags = validated_data.pop("tags", None)
        return self._save(super().update, instance, validated_data, tags=tags)
