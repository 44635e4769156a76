"""The published contracts of systems that cannot run here (SkyWalking's OAP), for contract tests.

They live outside the repository, in ``shared/contracts/`` beside the checkout (see its
README.md); they are read from there and never copied in. A test that needs one calls
:func:`contracts_dir`, which skips the test with the reason when the folder is absent
(``MESH_CONTRACTS_DIR`` names another place).

- :func:`segment_classes`: SkyWalking's ``Tracing.proto`` compiled at test time with
  grpcio-tools' protoc, and the module holding ``SegmentObject``.
- :func:`query_schema`: the OAP's GraphQL query protocol as one graphql-core schema.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tracing.proto imports common/Command.proto for the return type of its gRPC services
# (``Commands``), and the pinned folder does not hold that file. Segments do not use it: an
# empty stand-in lets protoc compile the pinned Tracing.proto and Common.proto unchanged.
_COMMAND_STANDIN = """syntax = "proto3";
package skywalking.v3;
message Commands {}
"""


def contracts_dir(name: str) -> Path:
    """``shared/contracts/<name>``, found from the checkout upwards; skips the test when absent."""
    configured = os.environ.get("MESH_CONTRACTS_DIR")
    candidates = [Path(configured)] if configured else [p / "shared" / "contracts" for p in ROOT.parents]
    for base in candidates:
        if (base / name).is_dir():
            return base / name
    where = configured or f"shared/contracts/ beside the checkout (looked in {', '.join(map(str, candidates[:3]))})"
    pytest.skip(f"the published contract {name} is not here ({where}); these tests check the project "
                "against it and cannot run without it")


@functools.cache
def _compiled(proto_root: str):
    from grpc_tools import protoc

    out = Path(tempfile.mkdtemp(prefix="sw-proto-"))
    standins = out / "standins"
    (standins / "common").mkdir(parents=True)
    (standins / "common" / "Command.proto").write_text(_COMMAND_STANDIN)
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main(["protoc", f"-I{proto_root}", f"-I{standins}", f"-I{include}", f"--python_out={out}",
                        "common/Common.proto", "common/Command.proto", "language-agent/Tracing.proto"])
    if code != 0:
        raise RuntimeError(f"protoc could not compile the pinned Tracing.proto (exit {code})")
    for package in ("common", "language_agent"):  # protoc names the folder of language-agent/ so
        (out / package / "__init__.py").touch()
    sys.path.insert(0, str(out))
    return importlib.import_module("language_agent.Tracing_pb2")


def segment_classes():
    """The compiled ``Tracing_pb2`` module (``SegmentObject``, ``SpanObject``, …)."""
    return _compiled(str(contracts_dir("skywalking-data-collect-protocol")))


def parse_segment(item: dict):
    """One segment as the runtime sent it, parsed strictly against ``SegmentObject``: unknown
    fields, wrong types and unknown enum names raise ``json_format.ParseError``."""
    import orjson
    from google.protobuf import json_format

    message = segment_classes().SegmentObject()
    json_format.Parse(orjson.dumps(item), message, ignore_unknown_fields=False)
    return message


@functools.cache
def _schema(folder: str):
    from graphql import build_schema

    files = sorted(Path(folder).glob("*.graphqls"), key=lambda p: (p.name != "common.graphqls", p.name))
    return build_schema("\n".join(p.read_text() for p in files))


def query_schema():
    """The OAP's query protocol (``common.graphqls`` first, then the rest) as one schema."""
    return _schema(str(contracts_dir("skywalking-query-protocol")))
