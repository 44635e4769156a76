"""The API's filter backend: django-filter's, building ``filterset_fields`` filter sets on the
project's base (meshadmin.filtersets.LenientFilterSet), so they read ids and integers as the
hand-written ones do."""

from django_filters.rest_framework import DjangoFilterBackend

from meshadmin.filtersets import LenientFilterSet


class MeshFilterBackend(DjangoFilterBackend):
    filterset_base = LenientFilterSet
