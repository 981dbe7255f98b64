"""The .env parser of City's env/import, and the masking of env/list."""

from __future__ import annotations

import pytest

from tollway.dialects.city.env import mask, parse_env
from tollway.store.env import KEY_RULE, MAX_VALUE_BYTES

# (name, text, values, skipped as (line, key, a part of the reason))
CASES: list[tuple[str, str, dict[str, str], list[tuple[int, str | None, str]]]] = [
    ("plain", "A=1\nB_2=two", {"A": "1", "B_2": "two"}, []),
    ("comments and blank lines", "# a comment\n\n   \n  # indented\nA=1\n", {"A": "1"}, []),
    ("export", "export A=1\nexport\tB=2", {"A": "1", "B": "2"}, []),
    ("empty value", "A=\nB=   \n", {"A": "", "B": ""}, []),
    ("spaces around = and the value", "  A = spaced value  \t", {"A": "spaced value"}, []),
    ("= inside the value", "URL=postgres://u:p@h/db?a=b", {"URL": "postgres://u:p@h/db?a=b"}, []),
    ("inline comment", "A=value # a comment\nB=value\t# tab", {"A": "value", "B": "value"}, []),
    ("# without whitespace is the value's", "A=val#ue\nB=#x\nC=http://h/#frag",
     {"A": "val#ue", "B": "#x", "C": "http://h/#frag"}, []),
    ("only a comment after =", "A= # nothing", {"A": ""}, []),
    ("single quotes are literal", r"A='x # y \n \" z'", {"A": r'x # y \n \" z'}, []),
    ("double quotes read escapes", r'A="a\nb \"q\" \\ \t end"', {"A": 'a\nb "q" \\ \t end'}, []),
    ("an unknown escape is kept", r'A="C:\path\x"', {"A": r"C:\path\x"}, []),
    ("quoted keeps inner spaces and #", 'A="  padded # not a comment  "', {"A": "  padded # not a comment  "}, []),
    ("comment after the closing quote", "A=\"v\" # c\nB='w'#c", {"A": "v", "B": "w"}, []),
    ("empty quotes", "A=\"\"\nB=''", {"A": "", "B": ""}, []),
    ("a double-quoted value over lines", 'KEY="-----BEGIN-----\nMIIB==\n-----END-----"\nB=2',
     {"KEY": "-----BEGIN-----\nMIIB==\n-----END-----", "B": "2"}, []),
    ("a single-quoted value over lines", "A='one\n  two '\nB=2", {"A": "one\n  two ", "B": "2"}, []),
    ("CRLF and a byte-order mark", "\ufeffA=1\r\nB=\"x\"\r\n", {"A": "1", "B": "x"}, []),
    ("a line without =", "A=1\njust words\nexport B\nC=3", {"A": "1", "C": "3"},
     [(2, None, "no '='"), (3, None, "no '='")]),
    ("invalid keys", "lower=1\n1ABC=2\nA-B=3\n=4\nOK=5", {"OK": "5"},
     [(1, "lower", KEY_RULE), (2, "1ABC", KEY_RULE), (3, "A-B", KEY_RULE), (4, None, KEY_RULE)]),
    ("a key of 128 characters, not 129", f"{'K' * 128}=1\n{'L' * 129}=2", {"K" * 128: "1"},
     [(2, "L" * 64 + "…", KEY_RULE)]),
    ("duplicates: the last wins", "A=1\nB=2\nA=3", {"A": "3", "B": "2"}, [(1, "A", "set again on line 3")]),
    ("text after the closing quote", "A=\"v\" tail\nB=2", {"B": "2"}, [(1, "A", "after the closing quote")]),
    ("text after a closing quote lines later", 'A="x\nB=1" tail\nC=2', {"C": "2"},
     [(1, "A", "after the closing quote")]),
    ("an unterminated quote skips one line", 'A="open\nB=2', {"B": "2"}, [(1, "A", "unterminated quote")]),
    ("a value too large", f"A={'x' * (MAX_VALUE_BYTES + 1)}\nB={'y' * MAX_VALUE_BYTES}",
     {"B": "y" * MAX_VALUE_BYTES}, [(1, "A", "64 KiB")]),
    ("NUL in a value", "A=x\x00y\nB=1", {"B": "1"}, [(1, "A", "NUL")]),
    ("line numbers count continuation lines", "A=\"1\n2\"\nnope\nB=2", {"A": "1\n2", "B": "2"},
     [(3, None, "no '='")]),
]


@pytest.mark.parametrize(("text", "values", "skipped"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_env(text: str, values: dict[str, str], skipped: list[tuple[int, str | None, str]]) -> None:
    parsed = parse_env(text)
    assert parsed.values == values
    assert [(s.line, s.key) for s in parsed.skipped] == [(line, key) for line, key, _ in skipped]
    for s, (_, _, reason) in zip(parsed.skipped, skipped, strict=True):
        assert reason in s.reason


def test_skipped_lines_come_in_line_order() -> None:
    parsed = parse_env("A=1\nbad\nA=2\nworse")
    assert [s.line for s in parsed.skipped] == [1, 2, 4]


@pytest.mark.parametrize(("value", "shown"), [
    ("", ""),
    ("short", "***"),
    ("x" * 15, "***"),
    ("sk-proj-abcdefgh12", "sk-p…12"),
    ("https://api.example.com/v1", "http…v1"),
])
def test_mask(value: str, shown: str) -> None:
    assert mask(value) == shown
