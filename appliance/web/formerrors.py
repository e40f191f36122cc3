"""Form errors in the page's words, each shown once: beside its field when the page shows that
field, else at the top, named by the field's label and linked to the page where it is set.

The configuration's validation words every error with the key it is about ("delivery.url: must
start with smtp://"): that key only says where the message goes.  A key inside a message
("needs sip.tls_cert and sip.tls_key") is replaced by the label the settings pages give it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import url_for

from appliance.web.settings_fields import PAGE_FIELDS

#: an entry of an array of tables as errors name it: "sip.peers[0].match"
_ENTRY_KEY = re.compile(r"^(?P<table>[a-z_]+\.[a-z_]+)\[(?P<index>\d+)\]\.(?P<name>[a-z_0-9]+)$")
#: a routing rule as errors name it: "routing rule 'sales'.to" or "routing rule 2.to"
_RULE_KEY = re.compile(r"^routing rule (?P<which>'[^']*'|\d+)\.(?P<name>[a-z_0-9]+)$")
#: one item of a list or table field: "routing.accepted_domains[0]", "routing.called.5551000"
_PART_OF_FIELD = re.compile(r"^(?P<key>[a-z_]+\.[a-z_]+)(?:\[\d+\]|\.(?P<item>.+))$")
#: a key written inside a message
_KEY_IN_TEXT = re.compile(r"\b[a-z_]+\.[a-z_]+\b")
#: what one entry of each editor is called
_ENTRY_NOUN = {"sip.peers": "Peer", "sip.registrations": "Registration", "routing.rules": "Rule"}


@dataclass(frozen=True)
class PageError:
    """An error no field on this page shows: its words, and where it is fixed."""

    text: str
    url: str = ""
    where: str = ""


@dataclass
class PlacedErrors:
    #: key as the page's fields are named -> messages shown beside that field
    fields: dict[str, list[str]] = field(default_factory=dict)
    #: everything else, for the top of the page
    page: list[PageError] = field(default_factory=list)

    @property
    def field_count(self) -> int:
        return len(self.fields)


@dataclass(frozen=True)
class _Where:
    label: str
    endpoint: str
    title: str


def _registry() -> tuple[dict[str, _Where], dict[str, tuple[Any, _Where]]]:
    """Every settings page's fields by key, and its entry editors by "section.table"."""
    fields: dict[str, _Where] = {}
    entries: dict[str, tuple[Any, _Where]] = {}
    for endpoint, title, page_fields, specs in PAGE_FIELDS:
        for f in page_fields:
            fields.setdefault(f.key, _Where(f.label, endpoint, title))
        for spec in specs:
            entries[f"{spec.section}.{spec.table}"] = (spec, _Where("", endpoint, title))
    return fields, entries


def label_of(key: str) -> _Where | None:
    """Where a key is set and what its field is called there, or None for a key no page shows."""
    fields, entries = _registry()
    if key in fields:
        return fields[key]
    part = _PART_OF_FIELD.match(key)  # one item of a list or table field: named by the field
    if part is not None and part.group("key") in fields:
        return fields[part.group("key")]
    m = _ENTRY_KEY.match(key)
    rule = _RULE_KEY.match(key)
    if m and m.group("table") in entries:
        table, name, which = m.group("table"), m.group("name"), str(int(m.group("index")) + 1)
    elif rule and "routing.rules" in entries:
        table, name, which = "routing.rules", rule.group("name"), rule.group("which")
    else:
        return None
    spec, where = entries[table]
    f = next((f for f in spec.fields if f.name == name), None)
    if f is None:
        return None
    return _Where(f"{_ENTRY_NOUN.get(table, 'Entry')} {which}: {f.label}", where.endpoint, where.title)


def in_page_words(text: str) -> str:
    """Keys inside a message replaced by their fields' labels, in quotes."""
    fields, _ = _registry()
    return _KEY_IN_TEXT.sub(
        lambda m: f"\u201c{fields[m.group(0)].label}\u201d" if m.group(0) in fields else m.group(0), text
    )


def place(errors: Iterable[str], shown: set[str]) -> PlacedErrors:
    """Each error beside the field it names when ``shown`` has it, else for the top of the page."""
    out = PlacedErrors()
    for error in errors:
        key, sep, message = error.partition(": ")
        part = _PART_OF_FIELD.match(key) if sep and key not in shown else None
        if part is not None and part.group("key") in shown:  # one item of a list or table field
            key, item = part.group("key"), part.group("item")
            message = f"{item}: {message}" if item else message
        if sep and key in shown:
            out.fields.setdefault(key, []).append(in_page_words(message))
            continue
        where = label_of(key) if sep else None
        if where is not None:
            out.page.append(
                PageError(
                    f"{where.label}: {in_page_words(message)}", url_for(where.endpoint), f"Settings, {where.title}"
                )
            )
        else:
            out.page.append(PageError(in_page_words(error)))
    return out


def shown_keys(
    fields: Iterable[Any] = (),
    entries: Iterable[Any] = (),
    rows: dict[str, list[dict[str, Any]]] | None = None,
    extra: Iterable[str] = (),
) -> set[str]:
    """The keys a page shows a field for: its fields, each entry row's fields as errors name them
    (the row's label, a dot, the field's name), and any other inputs (``extra``)."""
    keys = {f.key for f in fields} | set(extra)
    for spec in entries:
        for row in (rows or {}).get(spec.prefix, []):
            keys |= {f"{row['label']}.{f.name}" for f in spec.fields}
    return keys


def as_text(errors: Iterable[str]) -> str:
    """Errors for a one-line message (a flash): each named by its field's label, one sentence each."""
    out = []
    for error in errors:
        key, sep, message = error.partition(": ")
        where = label_of(key) if sep else None
        text = f"{where.label}: {in_page_words(message)}" if where is not None else in_page_words(error)
        out.append(text if text.endswith((".", "!", "?")) else text + ".")
    return " ".join(out)
