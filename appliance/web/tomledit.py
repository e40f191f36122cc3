"""Editing the appliance's configuration file from the web process.

The file stays the owner's: tomlkit keeps its comments, order and spelling, and only keys whose
value really changes are touched.  The whole result (with the secrets merged exactly as
``Config.load`` merges them) is validated with ``Config.from_dict`` before anything is written,
so a page can never leave a file the daemon refuses.  Writes are atomic (a temporary file in the
same directory, fsync, rename, fsync of the directory): a power cut leaves the old file or the
new one, never half of each.

Secrets (``delivery.password``, ``delivery.client_secret``, the passwords of
``[[sip.registrations]]`` and ``[[sip.peers]]``) live in ``secrets.toml`` beside the file, mode
0600, and are never handed back to a page: callers learn only whether one is set.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Table
from tomlkit.toml_document import TOMLDocument

from appliance.config import Config, ConfigError, _merge_secrets, config_file, default_state_dir
from appliance.fsutil import write_atomic

#: section -> keys that belong in secrets.toml
SECRET_KEYS: dict[str, tuple[str, ...]] = {"delivery": ("password", "client_secret")}
#: (section, array of tables) -> keys of each entry that belong in secrets.toml (merged by name)
SECRET_ENTRY_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("sip", "registrations"): ("password",),
    ("sip", "peers"): ("password",),
}
HEADER = (
    "Faxbridge configuration, written by the web UI. Comments and order are kept when it is\n"
    "saved again; passwords and client secrets live in secrets.toml beside it (mode 0600).\n"
    "Relative paths are relative to the state directory (--state-dir), wherever this file is."
)


class TomlEditError(ValueError):
    """A file that cannot be edited (not TOML); the message says which file and why."""


def defaults(section: str) -> dict[str, Any]:
    """The built-in value of every key of one section, keyed as in TOML ("from", not "from_")."""
    inst = getattr(Config(), section)
    return {("from" if f.name == "from_" else f.name): getattr(inst, f.name) for f in dataclasses.fields(inst)}


def error_key(error: str) -> str:
    """'delivery.url: must ...' -> 'delivery.url' (what a form puts its message beside)."""
    return error.split(": ", 1)[0]


def _parse(path: Path) -> TOMLDocument | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TomlEditError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise TomlEditError(f"{path}: not UTF-8 text (byte {e.start})") from None
    try:
        return tomlkit.parse(text)
    except TOMLKitError as e:
        raise TomlEditError(f"{path}: not valid TOML: {e}") from None


def _plain(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


class ConfigDoc:
    """The main file and secrets.toml as tomlkit documents, edited in memory until ``save``."""

    def __init__(
        self, path: Path, main: TOMLDocument, secrets: TOMLDocument, *, exists: bool, state_dir: Path | None = None
    ) -> None:
        self.path = path
        #: where the relative paths of the result resolve: the running configuration's
        self.state_dir = state_dir if state_dir is not None else default_state_dir()
        self.secrets_path = path.with_name("secrets.toml")
        self.main = main
        self.secrets = secrets
        self.exists = exists

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path, running: Config | None = None) -> ConfigDoc:
        """The file at ``path``, or a new document with only a header when there is none yet: its
        relative paths resolve in the running configuration's state directory, like the defaults."""
        path = Path(path)
        main = _parse(path)
        secrets = _parse(path.with_name("secrets.toml")) or tomlkit.document()
        state_dir = running.base_dir if running is not None else None
        if main is not None:
            return cls(path, main, secrets, exists=True, state_dir=state_dir)
        doc = cls(path, tomlkit.document(), secrets, exists=False, state_dir=state_dir)
        for line in HEADER.splitlines():
            doc.main.add(tomlkit.comment(line))
        doc.main.add(tomlkit.nl())
        return doc

    @classmethod
    def for_config(cls, running: Config) -> ConfigDoc:
        return cls.load(config_file(running), running)

    # -- plain keys -----------------------------------------------------------------------------
    def table(self, section: str, create: bool = False) -> Table | None:
        t = self.main.get(section)
        if t is None and create:
            t = tomlkit.table()
            self.main.add(section, t)
            t = self.main[section]
        return t

    def get(self, section: str, key: str, default: Any = None) -> Any:
        """The file's value (secrets excluded), else ``default``, else the built-in default."""
        t = self.table(section)
        if t is not None and key in t and key not in SECRET_KEYS.get(section, ()):
            return _plain(t[key])
        return default if default is not None else defaults(section).get(key)

    def set(self, section: str, key: str, value: Any) -> None:
        """Set a key when its value changes; an unchanged or default value leaves the file alone."""
        if key in SECRET_KEYS.get(section, ()):
            raise ValueError(f"{section}.{key} is a secret: use set_secret")
        t = self.table(section)
        if t is not None and key in t:
            if _plain(t[key]) != value:
                t[key] = value
            return
        if value == defaults(section).get(key):
            return
        if isinstance(value, dict):  # a sub-table ([routing.called]) with a blank line after it
            sub = tomlkit.table()
            sub.update(value)
            sub.add(tomlkit.nl())
            value = sub
        sect = self.table(section, create=True)
        assert sect is not None
        sect[key] = value

    # -- secrets --------------------------------------------------------------------------------
    def secret_is_set(self, section: str, key: str, entry: tuple[str, str] | None = None) -> bool:
        """Whether a secret has a value (in secrets.toml or, left over, in the main file)."""
        if entry is None:
            for doc in (self.secrets, self.main):
                t = doc.get(section)
                if t is not None and t.get(key):
                    return True
            return False
        table, name = entry
        for doc in (self.secrets, self.main):
            for e in _entries(doc, section, table):
                if e.get("name") == name and e.get(key):
                    return True
        return False

    def set_secret(self, section: str, key: str, value: str, entry: tuple[str, str] | None = None) -> None:
        """Put a secret into secrets.toml ("" removes it), and out of the main file."""
        if entry is None:
            t = self.secrets.get(section)
            if t is None:
                if not value:
                    self._drop_main_secret(section, key, None)
                    return
                self.secrets.add(section, tomlkit.table())
                t = self.secrets[section]
            if value:
                t[key] = value
            elif key in t:
                del t[key]
            self._drop_main_secret(section, key, None)
            return
        table, name = entry
        if not name:
            raise ValueError("an entry needs a name to keep its password in secrets.toml")
        target = next((e for e in _entries(self.secrets, section, table) if e.get("name") == name), None)
        if target is None and value:
            sect = self.secrets.get(section)
            if sect is None:
                self.secrets.add(section, tomlkit.table())
                sect = self.secrets[section]
            if table not in sect:
                sect[table] = tomlkit.aot()
            new = tomlkit.table()
            new["name"] = name
            sect[table].append(new)
            target = sect[table][-1]
        if target is not None:
            if value:
                target[key] = value
            elif key in target:
                del target[key]
        self._drop_main_secret(section, key, entry)

    def _drop_main_secret(self, section: str, key: str, entry: tuple[str, str] | None) -> None:
        if entry is None:
            t = self.main.get(section)
            if t is not None and key in t:
                del t[key]
            return
        for e in _entries(self.main, section, entry[0]):
            if e.get("name") == entry[1] and key in e:
                del e[key]

    def rename_secret_entry(self, section: str, table: str, old: str, new: str) -> None:
        """An entry was renamed in a form: its secrets follow it."""
        if old and new and old != new:
            for e in _entries(self.secrets, section, table):
                if e.get("name") == old:
                    e["name"] = new

    # -- arrays of tables ([[sip.peers]], [[routing.rules]]) ------------------------------------
    def entries(self, section: str, table: str) -> list[dict[str, Any]]:
        """Each entry as a plain dict, without its secrets."""
        hidden = SECRET_ENTRY_KEYS.get((section, table), ())
        return [{k: _plain(v) for k, v in e.items() if k not in hidden} for e in _entries(self.main, section, table)]

    def set_entries(
        self, section: str, table: str, values: list[dict[str, Any]], origins: list[int | None] | None = None
    ) -> None:
        """Replace the array with ``values``; ``origins[i]`` is the index of the existing entry
        that ``values[i]`` was edited from (None: new), so that entry keeps its comments and any
        keys the form does not show.  Secret keys are never touched here."""
        old = list(_entries(self.main, section, table))
        origins = origins if origins is not None else [i if i < len(old) else None for i in range(len(values))]
        origins = [o if o is not None and o < len(old) else None for o in origins]
        hidden = SECRET_ENTRY_KEYS.get((section, table), ())
        built = []
        for value, origin in zip(values, origins, strict=True):
            t = old[origin] if origin is not None else tomlkit.table()
            for k in [k for k in t if k not in value and k not in hidden]:
                del t[k]
            for k, v in value.items():
                if k not in t or _plain(t[k]) != v:
                    t[k] = v
            if origin is None:
                t.add(tomlkit.nl())  # a blank line before whatever follows, as people write it
            built.append(t)
        sect = self.table(section, create=True)
        assert sect is not None
        kept = [o for o in origins if o is not None]
        appended_only = kept == sorted(set(kept)) and origins[: len(kept)] == kept
        if not built:
            if table in sect:
                del sect[table]
            return
        if appended_only and isinstance(sect.get(table), AoT):
            # deletions and additions at the end: edit the array in place, so every other entry,
            # comment and blank line stays exactly where it was
            aot = sect[table]
            for index in sorted(set(range(len(old))) - set(kept), reverse=True):
                del aot[index]
            for t in built[len(kept) :]:
                aot.append(t)
            return
        aot = tomlkit.aot()
        for t in built:
            aot.append(t)
        sect[table] = aot

    def prune_secret_entries(self) -> None:
        """Secrets of entries that no longer exist would make the file unloadable: drop them."""
        for section, table in SECRET_ENTRY_KEYS:
            sect = self.secrets.get(section)
            if sect is None or table not in sect:
                continue
            if not isinstance(sect[table], (AoT, list)):
                continue  # not an array of tables: validation names it
            names = {_name(e) for e in _entries(self.main, section, table)}
            keep = [e for e in sect[table] if not isinstance(e, dict) or _name(e) in names]
            if len(keep) != len(sect[table]):
                if keep:
                    aot = tomlkit.aot()
                    for e in keep:
                        aot.append(e)
                    sect[table] = aot
                else:
                    del sect[table]

    # -- whole documents --------------------------------------------------------------------------
    def merged(self) -> dict[str, Any]:
        """Plain data with the secrets merged over it, as Config.load does: read back from the
        text these documents write, by the daemon's own TOML parser (tomlkit takes some things
        TOML does not, such as "3600\uff11" (a fullwidth one) for a number, and would write them
        as they came)."""
        data = _as_written(self.main, "the configuration")
        errors: list[str] = []
        for section, values in _as_written(self.secrets, "secrets.toml").items():
            if isinstance(values, dict) and isinstance(data.get(section, {}), dict):
                _merge_secrets(data.setdefault(section, {}), values, section, errors)
        if errors:
            raise ConfigError([f"secrets.toml: {e}" for e in errors])
        return data

    def validate(self) -> Config:
        """The configuration these documents make; ConfigError naming every wrong key."""
        self.prune_secret_entries()
        cfg = Config.from_dict(self.merged(), base_dir=self.state_dir)
        cfg.source = self.path.resolve()
        return cfg

    def save(self) -> Config:
        """Validate, then write secrets.toml (0600) and the main file atomically."""
        cfg = self.validate()
        if self.secrets.unwrap() or self.secrets_path.exists():
            write_atomic(self.secrets_path, tomlkit.dumps(self.secrets), 0o600)
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        write_atomic(self.path, self.main_text(), mode)
        self.exists = True
        return cfg

    def main_text(self) -> str:
        return tomlkit.dumps(self.main)

    def without_secrets(self) -> str:
        """The main file as a backup to download: any secret left in it is removed."""
        doc = tomlkit.parse(self.main_text())
        for section, keys in SECRET_KEYS.items():
            t = doc.get(section)
            for k in keys:
                if t is not None and k in t:
                    del t[k]
        for (section, table), keys in SECRET_ENTRY_KEYS.items():
            for e in _entries(doc, section, table):
                for k in keys:
                    if k in e:
                        del e[k]
        return tomlkit.dumps(doc)

    def with_secrets(self) -> str:
        """The main file with secrets.toml merged in: a backup that restores everything."""
        doc = tomlkit.parse(self.main_text())
        for section, keys in SECRET_KEYS.items():
            for k in keys:
                t = self.secrets.get(section)
                if t is not None and t.get(k):
                    sect = doc.get(section)
                    if sect is None:
                        doc.add(section, tomlkit.table())
                        sect = doc[section]
                    sect[k] = _plain(t[k])
        for (section, table), keys in SECRET_ENTRY_KEYS.items():
            by_name = {_name(e): e for e in _entries(self.secrets, section, table)}
            for e in _entries(doc, section, table):
                s = by_name.get(_name(e)) if _name(e) is not None else None
                for k in keys:
                    if s is not None and s.get(k):
                        e[k] = _plain(s[k])
        return tomlkit.dumps(doc)

    def restore(self, text: str, secrets_text: str | None = None) -> Config:
        """Replace the configuration with an uploaded backup; secrets in it go to secrets.toml,
        secrets it lacks are kept from the current secrets.toml, unless the backup brings its own
        ``secrets_text`` (an encrypted backup), which then replaces secrets.toml.  Validated before
        writing; raises ConfigError (nothing written) or TomlEditError for a file that is not TOML."""
        try:
            tomllib.loads(text)  # the daemon's parser first: tomlkit alone takes more than TOML
            new = tomlkit.parse(text)
        except (TOMLKitError, tomllib.TOMLDecodeError) as e:
            raise TomlEditError(f"the uploaded file is not valid TOML: {e}") from None
        if secrets_text is None:
            secrets = tomlkit.parse(tomlkit.dumps(self.secrets))
        else:
            try:
                tomllib.loads(secrets_text)
                secrets = tomlkit.parse(secrets_text)
            except (TOMLKitError, tomllib.TOMLDecodeError) as e:
                raise TomlEditError(f"the backup's secrets.toml is not valid TOML: {e}") from None
        restored = ConfigDoc(self.path, new, secrets, exists=self.exists, state_dir=self.state_dir)
        for section, keys in SECRET_KEYS.items():
            t = new.get(section)
            for k in keys:
                if isinstance(t, dict) and t.get(k) == "":
                    del t[k]  # an empty secret in a backup means "not given": the current one is kept
                elif isinstance(t, dict) and isinstance(t.get(k), str) and t.get(k):
                    restored.set_secret(section, k, _plain(t[k]))
        unnamed: list[str] = []
        for (section, table), keys in SECRET_ENTRY_KEYS.items():
            for i, entry in enumerate(_entries(new, section, table)):
                for k in keys:
                    if entry.get(k) == "":
                        del entry[k]
                    elif entry.get(k) is not None and not (isinstance(entry.get("name"), str) and entry["name"]):
                        # secrets.toml keeps an entry's password under its name: without one it
                        # would stay in the main file
                        unnamed.append(
                            f"{section}.{table}[{i}]: an entry with a {k} needs a name "
                            f'(its {k} is kept in secrets.toml under it): add name = "..."'
                        )
                    elif isinstance(entry.get(k), str) and entry.get(k):
                        restored.set_secret(section, k, _plain(entry[k]), (table, _plain(entry["name"])))
        if unnamed:
            raise ConfigError(unnamed)
        cfg = restored.save()
        self.main, self.secrets = restored.main, restored.secrets
        return cfg


def _as_written(doc: TOMLDocument, what: str) -> dict[str, Any]:
    """What tomllib (Config.load) reads from the text tomlkit writes for ``doc``."""
    try:
        return tomllib.loads(tomlkit.dumps(doc))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{what}: not valid TOML as it would be written: {e}"]) from None


def _name(entry: Any) -> str | None:
    """An entry's name when it is a string (a hand-written file may hold anything there)."""
    name = entry.get("name")
    return str(name) if isinstance(name, str) else None


def _entries(doc: Any, section: str, table: str) -> list[Any]:
    sect = doc.get(section)
    if not isinstance(sect, dict):
        return []
    arr = sect.get(table)
    if isinstance(arr, (AoT, list)):
        return [e for e in arr if isinstance(e, dict)]
    return []
