"""The OpenAPI description is true: schemathesis calls every operation of the API (through WSGI,
in this process, on the test database) with generated requests, as a member of a team and as
staff, and checks each answer: never a 5xx, a documented status code and content type, a body
that matches the documented schema; a request the description calls valid is not refused as
invalid, one it calls invalid is not accepted.

Bounded and reproducible: a fixed number of examples per operation, derandomized (the same
cases on every run, so a failure here is a failure on CI too).
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from meshadmin.models import APIToken
from tests.portal_support.mesh import build_mesh

EXAMPLES = 4
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
#: Where the description cannot say everything that makes a request acceptable: a body names
#: objects by id (which exist is the database's business), and the models' rules across fields
#: (a deprecated topic needs a sunset, names are unique) are 400s with a message per field, as
#: documented. There, valid-looking data may be refused; everywhere else it must be accepted.
NAMES_OBJECTS = {"/api/v1/simulator/"}  # the application, by name


def checks_for(case) -> list:
    if case.body is not None or case.operation.path in NAMES_OBJECTS:
        return CHECKS
    return [*CHECKS, positive_data_acceptance]


def api_schema():
    """The description /api/schema/ serves, made in process (no request: it needs no database)."""
    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app = get_wsgi_application()
    return loaded


@pytest.fixture
def wsgi_in_the_test_transaction():
    """The WSGI handler closes the database connection after each request (the test client turns
    that off too): the test's transaction, and its data, must outlive the requests."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(db, mesh_redis, personas, wsgi_in_the_test_transaction):
    """A small mesh to find, and a token of bob (member of Payments) and of sam (staff)."""
    build_mesh()
    keys = {}
    for name in ("bob", "sam"):
        token = APIToken(user=personas[name], description=f"schemathesis-{name}")
        keys[name] = token.generate()
        token.save()
    return keys


schema = api_schema()
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))


@schema.parametrize()
@SETTINGS
def test_as_a_member(case, tokens):
    response = case.call(headers={"Authorization": f"Token {tokens['bob']}"})
    case.validate_response(response, checks=checks_for(case))


@schema.parametrize()
@SETTINGS
def test_as_staff(case, tokens):
    response = case.call(headers={"Authorization": f"Token {tokens['sam']}"})
    case.validate_response(response, checks=checks_for(case))
