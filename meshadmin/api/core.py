"""API of the core app: teams, memberships, the audit log (read-only) and the user's tokens."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers
from rest_framework.routers import SimpleRouter

from meshadmin.filtersets import AuditEntryFilterSet, MembershipFilterSet, TeamFilterSet
from meshadmin.models import APIToken, AuditEntry, Membership, Team
from meshadmin.querysets import CHANGE

from .serializers import MeshModelSerializer
from .views import MeshModelViewSet, MeshReadOnlyViewSet


class TeamSerializer(MeshModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:team-detail")

    class Meta:
        model = Team
        fields = ["id", "url", "display", "name", "slug", "description", "created", "updated"]

    def create(self, validated_data):
        team = super().create(validated_data)
        team.add_creator(self.context["request"].user)
        return team


class MembershipSerializer(MeshModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:membership-detail")
    username = serializers.CharField(source="user.username", read_only=True)
    team_fields = ()
    choice_actions = {"team": CHANGE}  # only a team's owners manage its memberships

    class Meta:
        model = Membership
        fields = ["id", "url", "display", "team", "user", "username", "role", "created"]


class AuditEntrySerializer(serializers.ModelSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:auditentry-detail")
    object_type = serializers.SerializerMethodField()

    class Meta:
        model = AuditEntry
        fields = ["id", "url", "time", "actor", "actor_name", "request_id", "action", "object_type",
                  "object_id", "object_repr", "team", "before", "after"]

    def get_object_type(self, obj) -> str:
        return f"{obj.object_type.app_label}.{obj.object_type.model}"


class APITokenSerializer(MeshModelSerializer):
    """A token without its key; the answer to its creation alone carries ``key``: copy it then,
    it is never shown again (only a digest is kept)."""

    class Meta:
        model = APIToken
        fields = ["id", "display", "prefix", "description", "read_only", "expires", "created", "last_used"]
        read_only_fields = ["prefix", "created", "last_used"]

    def new_instance(self):
        return APIToken(user=self.context["request"].user)

    def create(self, validated_data):
        token = APIToken(user=self.context["request"].user, **validated_data)
        token.key = token.generate()
        token.save()
        return token


class APITokenCreatedSerializer(APITokenSerializer):
    key = serializers.CharField(read_only=True, help_text="The token itself: shown this once, never again.")

    class Meta(APITokenSerializer.Meta):
        fields = [*APITokenSerializer.Meta.fields, "key"]


_TEAM_ID = OpenApiParameter("id", str, OpenApiParameter.PATH, description="The team's id, or its slug.")


@extend_schema_view(**{name: extend_schema(parameters=[_TEAM_ID])
                       for name in ("retrieve", "update", "partial_update", "destroy")})
class TeamViewSet(MeshModelViewSet):
    """Teams; ``/api/v1/teams/{id}/`` takes the id or the slug (``/api/v1/teams/payments/``)."""

    queryset = Team.objects.order_by("name")
    serializer_class = TeamSerializer
    filterset_class = TeamFilterSet
    lookup_url_kwarg = "pk"

    def get_object(self):
        if not str(self.kwargs.get("pk", "")).isdigit():
            self.lookup_field = "slug"
        return super().get_object()


class MembershipViewSet(MeshModelViewSet):
    queryset = Membership.objects.select_related("user", "team").order_by("team__name", "user__username")
    serializer_class = MembershipSerializer
    filterset_class = MembershipFilterSet


class AuditEntryViewSet(MeshReadOnlyViewSet):
    queryset = AuditEntry.objects.select_related("object_type")
    serializer_class = AuditEntrySerializer
    filterset_class = AuditEntryFilterSet


class APITokenViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, MeshReadOnlyViewSet):
    """Your own tokens, without their keys. Creating one answers with its ``key``, once; deleting
    one revokes it at once. Both are in the audit log."""

    queryset = APIToken.objects.all()
    serializer_class = APITokenSerializer
    filterset_class = None

    def get_serializer_class(self):
        return APITokenCreatedSerializer if self.action == "create" else APITokenSerializer

    @extend_schema(responses={201: APITokenCreatedSerializer})
    def create(self, request, *args, **kwargs):
        return super().create(request, *args, **kwargs)


router = SimpleRouter()
router.register("teams", TeamViewSet)
router.register("memberships", MembershipViewSet)
router.register("audit", AuditEntryViewSet)
router.register("tokens", APITokenViewSet)
urlpatterns = router.urls
