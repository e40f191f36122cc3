"""The fax list's search against a model: Python's own case-insensitive substring test.

The one documented difference: an ASCII needle that only casefolding produces ("strasse" in
"Straße") is not found, because ASCII needles go through SQLite's LIKE.  The model says the same.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.spool import stats
from appliance.spool.store import FaxQuery, Spool

T0 = 1_700_000_000.0
#: letters that fold in interesting ways, ASCII wildcards, digits and the plus of a number
ALPHABET = "aAbBßSsÄäÖöİi%_\\+0123 é"
text = st.text(alphabet=ALPHABET, max_size=8)


def like(haystacks: list[str], needle: str) -> bool:
    """The model of an ASCII needle: SQLite's LIKE folds ASCII letters only, each column alone."""
    fold = lambda s: "".join(c.lower() if c.isascii() else c for c in s)  # noqa: E731
    return any(fold(needle) in fold(h) for h in haystacks)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(text, text, text), min_size=1, max_size=6), needle=text.filter(bool),
       field=st.sampled_from(["search", "caller", "tsi"]))
def test_search_matches_the_model(rows, needle, field):
    with tempfile.TemporaryDirectory() as d, Spool(Path(d) / "spool") as spool:
        ids = {}
        for i, (number, name, tsi) in enumerate(rows):
            ids[spool.begin_fax(T0 + i, caller_number=number, caller_name=name, remote_ident=tsi).id] = (
                number, name, tsi)
        got = {f.id for f in spool.list_faxes(query=FaxQuery(**{field: needle}), limit=100)}
        columns = {"search": lambda r: [r[0], r[1], r[2]], "caller": lambda r: [r[0], r[1]],
                   "tsi": lambda r: [r[2]]}[field]
        if needle.isascii():
            want = {i for i, r in ids.items() if like(columns(r), needle)}
        else:  # fb_fold over the columns joined by a space: a match may span two of them
            want = {i for i, r in ids.items() if needle.casefold() in " ".join(columns(r)).casefold()}
        assert got == want
        assert spool.count_faxes(query=FaxQuery(**{field: needle})) == len(want)


def test_the_documented_gap_and_what_it_does_find(spool: Spool):
    fax = spool.begin_fax(T0, caller_name="Straße 5 ÄRZTE")
    assert [f.id for f in spool.list_faxes(search="straße")] == [fax.id]
    assert [f.id for f in spool.list_faxes(search="ärzte")] == [fax.id]
    assert spool.list_faxes(search="strasse") == []  # ASCII needle, LIKE: no casefolding
    assert [f.id for f in spool.list_faxes(search="STRA")] == [fax.id]


@pytest.mark.parametrize("code, name", [(-1, "call ended before the fax completed")])
def test_cause_name_of_a_call_cut_short(code: int, name: str):
    assert stats.cause_name(code) == name


def test_cause_name_without_the_binding_uses_spandsps_words(monkeypatch: pytest.MonkeyPatch):
    import builtins

    from appliance.spandsp.t30 import result_text
    words = result_text(48)  # spandsp's own, read through the binding before it is taken away
    real = builtins.__import__

    def no_binding(name, *args, **kw):
        if name.startswith("appliance.spandsp"):
            raise ImportError("no spandsp on a web-only install")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_binding)
    assert stats.cause_name(48) == words


def test_cause_name_with_the_binding_uses_its_words():
    pytest.importorskip("appliance.spandsp.audio")
    words = stats.cause_name(0)
    assert words and words != "T.30 code 0"
