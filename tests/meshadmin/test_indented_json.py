"""``indented_json``: JSON text laid out as ``json.dumps(indent=2)`` would, its numbers, strings
and literals kept as written (the dead-letter panel shows events with it)."""

from __future__ import annotations

import json

from meshadmin.formatting import indented_json

VALUES = [
    {"a": [1, 2, {}], "b": {"c": []}, "tricky": 'x"y\\z ]{,: \\', "n": None, "t": True, "e": [[]], "u": "é"},
    [], {}, 1.5, "plain", [1, [2, [3]]],
]


def test_it_lays_json_out_as_json_dumps_with_indent_2():
    for value in VALUES:
        for ascii_only in (True, False):
            compact = json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))
            assert indented_json(compact) == json.dumps(value, indent=2, ensure_ascii=ascii_only)


def test_it_keeps_every_number_and_string_as_written():
    text = ('{ "big" : 12345678901234567890123 ,'
            '"long":[0.1000000000000000055511151231257827, 1E400, 1.50, -0],"s":"\\u00e9"}')
    assert indented_json(text) == ('{\n  "big": 12345678901234567890123,\n  "long": [\n'
                                   '    0.1000000000000000055511151231257827,\n    1E400,\n    1.50,\n    -0\n  ],\n'
                                   '  "s": "\\u00e9"\n}')
