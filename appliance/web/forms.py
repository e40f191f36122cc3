"""Forms bound to configuration keys: one field per key, entry editors for arrays of tables.

A page's form goes into the tomlkit document of the configuration file (``tomledit.ConfigDoc``)
through these functions and comes back out of it the same way, so every settings page and every
wizard step parses, shows and re-shows a value alike.  Secrets are write-only: a field says "set"
or "not set", and an empty field keeps the value.  Nothing here renders or saves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from appliance.strictnum import ascii_digits
from appliance.web.tomledit import ConfigDoc

#: at most this many rows of an entry editor are read from one form
MAX_ROWS = 200


@dataclass(frozen=True)
class Field:
    """One form field bound to one configuration key (``section.key``, or an entry's key)."""

    key: str
    label: str
    #: text | int | float | bool | lines (one per line) | list (lines or commas) | ints |
    #: pairs ("key = value" lines) | choice | secret | tristate (empty, true, false or text)
    kind: str = "text"
    help: str = ""
    choices: tuple[str, ...] = ()
    placeholder: str = ""
    #: a heading shown above the first field of a group (delivery: which backend uses these)
    group: str = ""

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[-1]


class _Remove:
    """A parsed value meaning "no value: leave the key out" (tristate left empty)."""


REMOVE = _Remove()


def parse_value(f: Field, form: MultiDict[str, str], name: str) -> Any:
    """The typed value of one field from a submitted form; ValueError says what is wrong."""
    if f.kind == "bool":
        return name in form
    raw = form.get(name, "")
    raw = raw.replace("\r\n", "\n")
    if f.kind == "int":
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
    if f.kind == "float":
        try:
            return float(raw.strip())
        except ValueError:
            raise ValueError("must be a number") from None
    if f.kind == "lines":
        return [line.strip() for line in raw.split("\n") if line.strip()]
    if f.kind == "list":
        return [p.strip() for p in raw.replace(",", "\n").split("\n") if p.strip()]
    if f.kind == "ints":
        try:
            return [int(p) for p in raw.replace("-", " ").replace(",", " ").split()]
        except ValueError:
            raise ValueError("must be numbers, e.g. 40000-40999") from None
    if f.kind == "pairs":
        out: dict[str, str] = {}
        for line in raw.split("\n"):
            if not line.strip():
                continue
            k, sep, v = line.partition("=")
            if not sep or not k.strip() or not v.strip():
                raise ValueError(f"{line.strip()!r}: write one 'number = address' a line")
            out[k.strip().strip('"')] = v.strip().strip('"')
        return out
    if f.kind == "choice":
        value = raw.strip()
        if value not in f.choices:
            raise ValueError("must be one of " + ", ".join(c or '""' for c in f.choices))
        return value
    if f.kind == "tristate":
        value = raw.strip()
        if not value:
            return REMOVE
        return {"true": True, "false": False}.get(value.lower(), value)
    return raw.strip()


def present(f: Field, form: MultiDict[str, str], name: str) -> bool:
    """Whether the form showed this field at all (an unchecked checkbox sends nothing, so
    checkboxes come with a hidden "<name>-shown"); a field a form did not show is left alone."""
    return (name + "-shown") in form if f.kind == "bool" else name in form


def show_value(f: Field, value: Any) -> Any:
    """A configuration value as the form shows it (the inverse of parse_value)."""
    if f.kind == "bool":
        return bool(value)
    if value is None:
        return ""
    if f.kind in ("lines", "list"):
        return "\n".join(str(v) for v in value)
    if f.kind == "ints":
        return "-".join(str(v) for v in value)
    if f.kind == "pairs":
        return "\n".join(f"{k} = {v}" for k, v in dict(value).items())
    if f.kind == "tristate":
        return {True: "true", False: "false"}.get(value, value) if not isinstance(value, str) else value
    return str(value)


def field_values(doc: ConfigDoc, fields: list[Field]) -> dict[str, Any]:
    """What each field shows now (secrets: nothing)."""
    return {f.key: ("" if f.kind == "secret" else show_value(f, doc.get(f.section, f.name))) for f in fields}


def form_values(fields: list[Field], form: MultiDict[str, str]) -> dict[str, Any]:
    """The submitted values, to show again beside errors (secrets: never echoed)."""
    return {
        f.key: (f.key in form if f.kind == "bool" else "" if f.kind == "secret" else form.get(f.key, ""))
        for f in fields
    }


def apply_fields(doc: ConfigDoc, fields: list[Field], form: MultiDict[str, str], errors: list[str]) -> None:
    """Put the submitted values into the document; secrets only when typed (or cleared)."""
    for f in fields:
        if f.kind == "secret":
            value = form.get(f.key, "")
            if form.get(f.key + "-clear"):
                doc.set_secret(f.section, f.name, "")
            elif value:
                doc.set_secret(f.section, f.name, value)
            continue
        if not present(f, form, f.key):
            continue
        try:
            value = parse_value(f, form, f.key)
        except ValueError as e:
            errors.append(f"{f.key}: {e}")
            continue
        if value is not REMOVE:
            doc.set(f.section, f.name, value)


def secrets_state(doc: ConfigDoc, fields: list[Field]) -> dict[str, bool]:
    return {f.key: doc.secret_is_set(f.section, f.name) for f in fields if f.kind == "secret"}


# -- arrays of tables: peers, registrations, routing rules --------------------------------------
@dataclass(frozen=True)
class EntrySpec:
    section: str
    table: str
    #: form-name prefix of the rows ("peers-0-match")
    prefix: str
    title: str
    fields: tuple[Field, ...]
    defaults: Callable[[], Any]
    #: how the configuration's errors name entry i ("sip.peers[0]", "routing rule 'sales'")
    label: Callable[[int, dict[str, Any]], str] = field(default=lambda i, v: "")
    #: fields that must be given for a new row to count (an all-empty row is the blank one)
    key_fields: tuple[str, ...] = ("name",)
    #: the order matters (routing rules): each row gets a position field
    ordered: bool = False

    def default(self, name: str) -> Any:
        return getattr(self.defaults(), name, None)


def entry_rows(doc: ConfigDoc, spec: EntrySpec) -> list[dict[str, Any]]:
    """The rows an editor shows: every entry, then one blank row to add a new one."""
    rows = []
    for i, entry in enumerate(doc.entries(spec.section, spec.table)):
        values = {
            f.name: ("" if f.kind == "secret" else show_value(f, entry.get(f.name, spec.default(f.name))))
            for f in spec.fields
        }
        secret = {
            f.name: doc.secret_is_set(spec.section, f.name, (spec.table, entry.get("name", "")))
            for f in spec.fields
            if f.kind == "secret"
        }
        rows.append({"origin": i, "values": values, "secret": secret, "label": spec.label(i, entry)})
    blank = {f.name: ("" if f.kind == "secret" else show_value(f, spec.default(f.name))) for f in spec.fields}
    rows.append({"origin": "", "values": blank, "secret": {}, "label": spec.label(len(rows), {}), "new": True})
    return rows


def submitted_rows(spec: EntrySpec, form: MultiDict[str, str], doc: ConfigDoc) -> list[dict[str, Any]]:
    """The rows as submitted, to show again beside errors."""
    rows = []
    final = 0
    for i in _ordered(spec, form):
        p = f"{spec.prefix}-{i}-"
        values = {
            f.name: (p + f.name in form if f.kind == "bool" else "" if f.kind == "secret" else form.get(p + f.name, ""))
            for f in spec.fields
        }
        origin = form.get(p + "_origin", "")
        deleted = bool(form.get(p + "_delete"))
        secret = {
            f.name: doc.secret_is_set(spec.section, f.name, (spec.table, str(values.get("name", ""))))
            for f in spec.fields
            if f.kind == "secret"
        }
        label = spec.label(final, {"name": values.get("name", "")})
        if not deleted and (origin != "" or _row_given(spec, values, form, p)):
            final += 1
        rows.append(
            {
                "origin": origin,
                "values": values,
                "secret": secret,
                "label": label,
                "deleted": deleted,
                "new": origin == "",
            }
        )
    if not rows or rows[-1]["origin"] != "":
        rows.append({"origin": "", "values": {f.name: "" for f in spec.fields}, "secret": {}, "label": "", "new": True})
    return rows


def _count(form: MultiDict[str, str], spec: EntrySpec) -> int:
    try:
        return max(0, min(MAX_ROWS, int(form.get(f"{spec.prefix}-count", "0"))))
    except ValueError:
        return 0


def _ordered(spec: EntrySpec, form: MultiDict[str, str]) -> list[int]:
    """Row indexes in the order asked for by their "position" fields (rules: first match wins);
    rows without a usable position keep their place."""

    def key(i: int) -> tuple[float, int]:
        try:
            return float(form.get(f"{spec.prefix}-{i}-_position", "")), i
        except ValueError:
            return float(i + 1), i

    rows = list(range(_count(form, spec)))
    return sorted(rows, key=key) if spec.ordered else rows


def _row_given(spec: EntrySpec, values: dict[str, Any], form: MultiDict[str, str], p: str) -> bool:
    return any(str(values.get(k, "")).strip() for k in spec.key_fields) or any(
        form.get(p + f.name) for f in spec.fields if f.kind == "secret"
    )


def apply_entries(doc: ConfigDoc, spec: EntrySpec, form: MultiDict[str, str], errors: list[str]) -> None:
    """Rebuild the array from the editor's rows (deleted rows dropped, a blank new row ignored)."""
    old = doc.entries(spec.section, spec.table)
    values: list[dict[str, Any]] = []
    origins: list[int | None] = []
    secret_ops: list[tuple[str, str, bool, str, str]] = []
    for i in _ordered(spec, form):
        p = f"{spec.prefix}-{i}-"
        if form.get(p + "_delete"):
            continue
        o = form.get(p + "_origin", "")
        origin = int(o) if ascii_digits(o, 6) and int(o) < len(old) else None
        if origin in origins:
            origin = None  # a form naming one entry twice: the second is a new one
        shown = {f.name: form.get(p + f.name, "") for f in spec.fields if f.kind not in ("bool", "secret")}
        if origin is None and not _row_given(spec, shown, form, p):
            continue  # the blank row for a new entry, left blank
        base = old[origin] if origin is not None else {}
        entry: dict[str, Any] = {}
        label = spec.label(len(values), {"name": shown.get("name", "")})
        for f in spec.fields:
            if f.kind == "secret":
                continue
            if not present(f, form, p + f.name):
                if f.name in base:
                    entry[f.name] = base[f.name]
                continue
            try:
                v = parse_value(f, form, p + f.name)
            except ValueError as e:
                errors.append(f"{label}.{f.name}: {e}")
                if f.name in base:
                    entry[f.name] = base[f.name]
                continue
            if v is REMOVE:
                continue
            if f.name in base or v != spec.default(f.name):
                entry[f.name] = v
        # keys this editor does not show stay as they were
        for k, v in base.items():
            if k not in entry and not any(f.name == k for f in spec.fields):
                entry[k] = v
        values.append(entry)
        origins.append(origin)
        for f in spec.fields:
            if f.kind == "secret":
                secret_ops.append(
                    (
                        f.name,
                        form.get(p + f.name, ""),
                        bool(form.get(p + f.name + "-clear")),
                        str(base.get("name", "")),
                        str(entry.get("name", "")),
                    )
                )
                if form.get(p + f.name) and not entry.get("name"):
                    errors.append(f"{label}.name: needed to keep the {f.name} in secrets.toml")
    doc.set_entries(spec.section, spec.table, values, origins)
    for key, value, clear, old_name, new_name in secret_ops:
        if not new_name:
            continue
        doc.rename_secret_entry(spec.section, spec.table, old_name, new_name)
        if clear:
            doc.set_secret(spec.section, key, "", (spec.table, new_name))
        elif value:
            doc.set_secret(spec.section, key, value, (spec.table, new_name))
