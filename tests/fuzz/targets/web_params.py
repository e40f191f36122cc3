"""Query-string parameters of the fax list and the API (appliance/web/params.py).

Input: a raw query string, parsed by werkzeug exactly as a request's ``args`` (raw bytes that are
not UTF-8 are werkzeug's to refuse: skipped here; percent-escaped ones arrive).  Contract: each
reader returns a value within its bounds or raises BadParam naming the parameter it read
(answered 400); nothing else escapes; a list position survives format_cursor -> cursor_param.
"""
from __future__ import annotations

import io

from werkzeug.wrappers import Request

from appliance.web.params import (MAX_FIELD, MAX_SEARCH, STATES, BadParam, cursor_param, date_range,
                                  email_param, format_cursor, int_param, search_param, state_param,
                                  text_param)

MAX_LEN = 1024
DICTS = ("web", "_text")


def _args(data: bytes):  # type: ignore[no-untyped-def]
    environ = {"REQUEST_METHOD": "GET", "QUERY_STRING": data.decode("latin-1"), "wsgi.input": io.BytesIO(),
               "SERVER_NAME": "fax.example", "SERVER_PORT": "443", "wsgi.url_scheme": "https"}
    return Request(environ).args


def _expect(name: str, read, check) -> None:  # type: ignore[no-untyped-def]
    try:
        value = read()
    except BadParam as e:
        assert e.name == name, (e.name, name)
        return
    assert check(value), (name, value)


def _printable(limit: int):  # type: ignore[no-untyped-def]
    return lambda v: v is None or (0 < len(v) <= limit and all(ord(c) >= 32 for c in v))


def TestOneInput(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return
    args = _args(data)
    _expect("limit", lambda: int_param(args, "limit", 50, 0, 500), lambda v: 0 <= v <= 500)
    _expect("offset", lambda: int_param(args, "offset", 0, 0), lambda v: v >= 0)
    _expect("state", lambda: state_param(args), lambda v: v is None or v in STATES)
    _expect("q", lambda: search_param(args), _printable(MAX_SEARCH))
    for name in ("caller", "called", "tsi", "recipient"):
        _expect(name, lambda: text_param(args, name), _printable(MAX_FIELD))
    try:
        since, until = date_range(args)
    except BadParam as e:
        assert e.name in ("from", "to"), e.name
    else:
        assert since is None or until is None or since < until, (since, until)
    for name in ("before", "after"):
        try:
            cursor = cursor_param(args, name)
        except BadParam as e:
            assert e.name == name
            continue
        if cursor is not None:
            created, fax_id = cursor
            assert cursor_param({name: format_cursor(created, fax_id)}, name) == cursor, cursor
    _expect("to", lambda: email_param(args, "to"), lambda v: "@" in v and len(v) <= 254)
