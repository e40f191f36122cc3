"""``faxbridge.txt``: the settings an owner may write on the card's boot partition before first boot.

Sans-I/O: text in, a ``BootConfig`` and a list of ``Problem`` out. The file is ``key = value``
lines with ``#`` comments, edited by anyone with any editor (Notepad's CRLF and UTF-8 BOM are
fine). A bad line never stops the box: each problem names its line and what is wrong, and every
valid setting still applies. Bounds are checked here, at the point of reading (Klipper's rule).
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from dataclasses import dataclass, field

#: the file is a few hundred bytes; a card may hold anything, so read at most this much
MAX_BYTES = 64 * 1024
MAX_LINE = 1024
#: an SSH public key line (RSA 8192 is ~1.4 kB)
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
#: keys whose values are secrets: imported to the data partition, then blanked in the file
SECRET_KEYS = ("wifi_passphrase", "admin_password")
#: replaces an imported secret's line (one line for one, so the line numbers of problems stay true)
IMPORTED_NOTE = "# {key}: imported to the box and erased here. To change it, write a new line: {key} = ..."

_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_COUNTRY = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based; 0 = the file as a whole
    message: str

    def __str__(self) -> str:
        return f"faxbridge.txt line {self.line}: {self.message}" if self.line else f"faxbridge.txt: {self.message}"


@dataclass
class BootConfig:
    """What the file sets; None/"" = not given (the box keeps what it has)."""

    hostname: str = ""
    timezone: str = ""
    wifi_ssid: str = ""
    wifi_passphrase: str = ""
    wifi_country: str = ""
    #: None = DHCP; else an interface address with prefix
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None = None
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dns: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = field(default_factory=list)
    #: None = not said (SSH stays off)
    ssh: bool | None = None
    ssh_authorized_key: str = ""
    admin_password: str = ""
    #: the keys the file gave a valid value, in file order
    given: list[str] = field(default_factory=list)


def _hostname(v: str) -> str:
    if not _HOSTNAME.fullmatch(v):
        raise ValueError("letters, digits and '-' only, at most 63, not starting or ending with '-'")
    return v.lower()


def _timezone(v: str) -> str:
    if ("/" not in v and v != "UTC") or ".." in v or v.startswith("/"):
        raise ValueError(f"{v!r} is not a time zone name such as Europe/Berlin or UTC")
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{v!r} is not a known time zone (e.g. Europe/Berlin)") from None
    return v


def _ssid(v: str) -> str:
    if len(v.encode("utf-8")) > 32:
        raise ValueError("a Wi-Fi network name has at most 32 bytes")
    if any(ord(c) < 32 or c in '"\\' for c in v):
        raise ValueError(
            "the network name contains a quote, backslash or control character, which this file cannot carry"
        )
    return v


def _passphrase(v: str) -> str:
    if not 8 <= len(v) <= 63 or not all(32 <= ord(c) < 127 for c in v):
        raise ValueError("a WPA passphrase has 8 to 63 printable ASCII characters")
    return v


def _country(v: str) -> str:
    if not _COUNTRY.fullmatch(v.upper()):
        raise ValueError("two letters, the country's ISO code (e.g. DE, GB, US)")
    return v.upper()


def _address(v: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
    if v.lower() == "dhcp":
        return None
    if "/" not in v:
        raise ValueError("write 'dhcp' or an address with its prefix length, e.g. 192.168.1.50/24")
    try:
        iface = ipaddress.ip_interface(v)
    except ValueError:
        raise ValueError(f"{v!r} is not an address with a prefix length (e.g. 192.168.1.50/24)") from None
    if (iface.ip == iface.network.network_address and iface.network.num_addresses > 2) or iface.ip.is_multicast:
        raise ValueError(f"{v!r} is not a host address (it is the network's own address or multicast)")
    return iface


def _ip(v: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        raise ValueError(f"{v!r} is not an IP address") from None


def _dns(v: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    parts = [p for p in re.split(r"[,\s]+", v) if p]
    if len(parts) > 3:
        raise ValueError("at most 3 name servers")
    return [_ip(p) for p in parts]


def _onoff(v: str) -> bool:
    low = v.lower()
    if low in ("on", "yes", "true", "1"):
        return True
    if low in ("off", "no", "false", "0"):
        return False
    raise ValueError("write on or off")


def _ssh_key(v: str) -> str:
    parts = v.split()
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        raise ValueError("one public key line as in id_ed25519.pub: 'ssh-ed25519 AAAA... comment'")
    if not re.fullmatch(r"[A-Za-z0-9+/]+={0,3}", parts[1]) or len(parts[1]) < 16:
        raise ValueError("the key's second word is not base64: paste the whole .pub line")
    return " ".join(parts)


def _password(v: str) -> str:
    from appliance.web.auth import password_problem

    problem = password_problem(v)
    if problem:
        raise ValueError(problem)
    return v


#: key -> converter; each raises ValueError with the owner-facing reason
PARSERS = {
    "hostname": _hostname,
    "timezone": _timezone,
    "wifi_ssid": _ssid,
    "wifi_passphrase": _passphrase,
    "wifi_country": _country,
    "address": _address,
    "gateway": _ip,
    "dns": _dns,
    "ssh": _onoff,
    "ssh_authorized_key": _ssh_key,
    "admin_password": _password,
}


def decode(data: bytes) -> tuple[str, list[Problem]]:
    """The file's text (BOM dropped, CRLF and CR as LF), cut at MAX_BYTES; bytes that are not
    UTF-8 become U+FFFD so the lines around them still apply."""
    problems = []
    if len(data) > MAX_BYTES:
        problems.append(
            Problem(0, f"larger than {MAX_BYTES // 1024} KiB: only the first {MAX_BYTES // 1024} KiB were read")
        )
        data = data[:MAX_BYTES]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n"), problems


def parse(data: bytes) -> tuple[BootConfig, list[Problem]]:
    """Every valid setting, and one Problem per line that is not one."""
    text, problems = decode(data)
    cfg = BootConfig()
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(raw) > MAX_LINE:
            problems.append(Problem(number, f"longer than {MAX_LINE} characters: ignored"))
            continue
        if "\ufffd" in line:
            problems.append(Problem(number, "not UTF-8 text (save the file as UTF-8): ignored"))
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not key:
            problems.append(Problem(number, "not 'key = value' (a setting needs an '='): ignored"))
            continue
        conv = PARSERS.get(key)
        if conv is None:
            hint = _near(key)
            near = f" (did you mean {hint}?)" if hint else ""
            problems.append(Problem(number, f"unknown setting {_show(key)}{near}"))
            continue
        if key in seen:
            problems.append(Problem(number, f"{key} is set again (first on line {seen[key]}): this one is ignored"))
            continue
        seen[key] = number
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if value == "":
            continue  # left empty: not set
        try:
            converted = conv(value)
        except ValueError as e:
            problems.append(Problem(number, f"{key}: {e}"))
            continue
        setattr(cfg, key, converted)
        cfg.given.append(key)
    _cross_check(cfg, problems, seen)
    return cfg, problems


def _cross_check(cfg: BootConfig, problems: list[Problem], seen: dict[str, int]) -> None:
    """Settings that only make sense together; the dependent one is dropped, with its line."""

    def drop(key: str, message: str) -> None:
        problems.append(Problem(seen.get(key, 0), message))
        setattr(cfg, key, PARSERS_DEFAULTS[key])
        if key in cfg.given:
            cfg.given.remove(key)

    if cfg.gateway is not None:
        if cfg.address is None:
            drop("gateway", "gateway: only used with a static address (address = ...); ignored")
        elif cfg.gateway.version != cfg.address.version or cfg.gateway not in cfg.address.network:
            drop("gateway", f"gateway: {cfg.gateway} is not in the address's network {cfg.address.network}; ignored")
    if cfg.dns and cfg.address is None:
        drop("dns", "dns: only used with a static address (DHCP gives the name servers); ignored")
    if cfg.wifi_passphrase and not cfg.wifi_ssid:
        drop("wifi_passphrase", "wifi_passphrase: no wifi_ssid is set; ignored")


PARSERS_DEFAULTS = {k: getattr(BootConfig(), k) for k in PARSERS}


def _show(s: str) -> str:
    return repr(s if len(s) <= 40 else s[:40] + "...")


def _near(key: str) -> str | None:
    import difflib

    close = difflib.get_close_matches(key, PARSERS, n=1, cutoff=0.7)
    return close[0] if close else None


def _key_of(line: str) -> str:
    """The setting a line sets, as ``parse`` reads it ("" for a comment or a line without '=')."""
    line = line.strip()
    if line.startswith("#") or "=" not in line:
        return ""
    return line.partition("=")[0].strip().lower()


def blank_secrets(data: bytes, keys: tuple[str, ...] = SECRET_KEYS) -> bytes:
    """The file with each line that gives one of ``keys`` a value replaced by a comment saying it
    was imported; everything else byte for byte, CRLF kept where the file used it. Lines are
    read exactly as ``parse`` reads them, so no line it takes a secret from is left behind."""
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    out = []
    for line in data[len(bom) :].splitlines(keepends=True):
        stripped = line.rstrip(b"\r\n")
        ending = line[len(stripped) :]
        text = stripped.decode("utf-8", errors="replace")
        key = _key_of(text)
        value = text.partition("=")[2].strip()
        if key in keys and value not in ("", '""', "''"):
            out.append(IMPORTED_NOTE.format(key=key).encode() + ending)
        else:
            out.append(line)
    return bom + b"".join(out)


def has_secrets(data: bytes) -> bool:
    return blank_secrets(data) != data
