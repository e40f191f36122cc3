"""HTTP Digest for SIP (RFC 7616 as used by RFC 3261 §22 and RFC 8760), sans-I/O.

Client side: `parse_challenges` reads WWW-/Proxy-Authenticate, `DigestClient` answers the best
challenge of a 401/407 (SHA-256 before MD5, qop=auth or none) and counts nc per nonce.
Server side: `DigestServer` issues stateless nonces (a timestamp HMAC-ed with a per-process key,
so nothing is stored per challenge), checks their age and the response, and refuses a repeated or
decreasing nc for a nonce (replay). Passwords never appear in repr() or in any log line.
Like the rest of the SIP core, nothing here reads a clock or the OS's entropy by itself: `now`
comes with each call, and randomness (cnonces, the nonce key) from an injected `random.Random`
(by default `random.SystemRandom`, since both must be unguessable).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from appliance.sip.errors import SipParseError
from appliance.sip.uri import split_quoted

if TYPE_CHECKING:
    from appliance.sip.message import Headers, SipResponse

ALGORITHMS: dict[str, Callable[..., hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "MD5-SESS": hashlib.md5,
    "SHA-256": hashlib.sha256,
    "SHA-256-SESS": hashlib.sha256,
}
#: preference when a 401/407 offers several challenges (RFC 8760 §2.4: the strongest we support)
PREFERENCE = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")
_NC_RE = re.compile(r"[0-9a-fA-F]{8}|0")
_PARAM_RE = re.compile(r'^\s*([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*$', re.S)


def _h(algorithm: str, text: str) -> str:
    return ALGORITHMS[algorithm.upper()](text.encode("utf-8")).hexdigest()


def parse_auth_params(text: str) -> dict[str, str]:
    """'a="x, y", b=z' -> {"a": "x, y", "b": "z"}; names lower-cased, quotes and escapes removed."""
    params: dict[str, str] = {}
    for item in split_quoted(text, ","):
        if not item.strip():
            continue
        m = _PARAM_RE.match(item)
        if not m:
            raise SipParseError("Bad auth parameter")
        value = m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[m.group(1).lower()] = value
    return params


@dataclass(frozen=True)
class Challenge:
    """One Digest challenge; `proxy` tells a 407's Proxy-Authenticate from a 401's."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False

    @property
    def supported(self) -> bool:
        return self.algorithm.upper() in ALGORITHMS and (not self.qop or "auth" in self.qop)

    @property
    def header(self) -> str:
        """The header our answer goes in."""
        return "Proxy-Authorization" if self.proxy else "Authorization"


def parse_challenge(value: str, proxy: bool = False) -> Challenge:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError(f"Unsupported auth scheme {scheme}")
    p = parse_auth_params(rest)
    if "realm" not in p or "nonce" not in p:
        raise SipParseError("Digest challenge without realm or nonce")
    qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
    return Challenge(
        p["realm"],
        p["nonce"],
        p.get("algorithm", "MD5").upper(),
        qop,
        p.get("opaque"),
        p.get("stale", "").lower() == "true",
        proxy,
    )


def parse_challenges(headers: Headers) -> list[Challenge]:
    """Every well-formed Digest challenge of a 401/407 (a `Headers`), best first; others skipped."""
    found: list[Challenge] = []
    for name, proxy in (("WWW-Authenticate", False), ("Proxy-Authenticate", True)):
        for value in headers.get_all(name):
            try:
                found.append(parse_challenge(value, proxy))
            except SipParseError:
                continue
    usable = [c for c in found if c.supported]
    return sorted(usable, key=lambda c: PREFERENCE.index(c.algorithm))


def response_digest(
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str = "",
    cnonce: str = "",
    qop: str = "",
) -> str:
    """The request-digest of RFC 7616 §3.4.1 (and RFC 2069 when qop is empty)."""
    algo = algorithm.upper()
    ha1 = _h(algo, f"{username}:{realm}:{password}")
    if algo.endswith("-SESS"):
        ha1 = _h(algo, f"{ha1}:{nonce}:{cnonce}")
    ha2 = _h(algo, f"{method}:{uri}")
    if qop:
        return _h(algo, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algo, f"{ha1}:{nonce}:{ha2}")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_authorization(
    challenge: Challenge, username: str, password: str, method: str, uri: str, nc: int = 1, cnonce: str = ""
) -> str:
    """The Authorization/Proxy-Authorization value answering `challenge` for one request."""
    qop = "auth" if "auth" in challenge.qop else ""
    nc_text = f"{nc:08x}" if qop else ""
    digest = response_digest(
        challenge.algorithm,
        username,
        challenge.realm,
        password,
        method,
        uri,
        challenge.nonce,
        nc_text,
        cnonce if qop else "",
        qop,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(digest)}",
        f"algorithm={challenge.algorithm}",
    ]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    return "Digest " + ", ".join(parts)


@dataclass
class DigestClient:
    """Credentials for one account plus the nonce counts of the challenges answered so far.

    `authorize(response, method, uri)` returns (header name, value) pairs to add to the resent
    request, or [] when the 401/407 cannot be answered (no supported challenge). `rng` makes
    the cnonces (tests inject a seeded one).
    """

    username: str
    password: str = field(repr=False)
    rng: random.Random = field(default_factory=random.SystemRandom, repr=False)
    _nc: dict[str, int] = field(default_factory=dict, repr=False)

    def authorize(
        self, response: SipResponse, method: str, uri: str, realms: set[str] | None = None
    ) -> list[tuple[str, str]]:
        """`realms`: answer only challenges of these realms (None: any)."""
        out: list[tuple[str, str]] = []
        seen: set[tuple[bool, str]] = set()
        for ch in parse_challenges(response.headers):
            if realms is not None and ch.realm not in realms:
                continue
            if (ch.proxy, ch.realm) in seen:
                continue  # one answer per realm, with its best algorithm
            seen.add((ch.proxy, ch.realm))
            nc = self._nc.get(ch.nonce, 0) + 1
            self._nc[ch.nonce] = nc
            if len(self._nc) > 64:
                self._nc.pop(next(iter(self._nc)))
            out.append(
                (ch.header, build_authorization(ch, self.username, self.password, method, uri, nc, self._cnonce()))
            )
        return out

    def _cnonce(self) -> str:
        return base64.b64encode(self.rng.randbytes(18)).decode()


class VerifyResult:
    OK, MISSING, STALE, FAILED = "ok", "missing", "stale", "failed"


class DigestServer:
    """Challenges and checks credentials of peers that must authenticate (we are the UAS).

    Nonce = base64(8-byte time || HMAC-SHA256(key, time)[:16]): valid for `lifetime` seconds
    without any per-nonce state; the only state is the highest nc seen per recent nonce.
    """

    def __init__(
        self,
        realm: str,
        *,
        lifetime: float = 300.0,
        key: bytes | None = None,
        algorithm: str = "SHA-256",
        rng: random.Random | None = None,
    ) -> None:
        self.realm = realm
        self.lifetime = lifetime
        self.algorithm = algorithm
        self._key = key or (rng or random.SystemRandom()).randbytes(32)
        self._nc: dict[str, int] = {}

    def nonce(self, now: float) -> str:
        """A nonce stamped with `now` (the caller's clock: the same one `verify` is given)."""
        stamp = struct.pack(">d", now)
        return base64.b64encode(stamp + hmac.new(self._key, stamp, "sha256").digest()[:16]).decode()

    def challenge(self, now: float, stale: bool = False) -> str:
        """A WWW-Authenticate value; RFC 8760: offer SHA-256, old peers take the MD5 one (see
        `challenges`)."""
        return self._challenge(self.algorithm, self.nonce(now), stale)

    def challenges(self, now: float, stale: bool = False) -> list[str]:
        """SHA-256 first, MD5 second (RFC 8760 §2.4), sharing one nonce."""
        nonce = self.nonce(now)
        return [self._challenge(a, nonce, stale) for a in dict.fromkeys((self.algorithm, "MD5"))]

    def _challenge(self, algorithm: str, nonce: str, stale: bool) -> str:
        value = f'Digest realm={_quote(self.realm)}, nonce={_quote(nonce)}, algorithm={algorithm}, qop="auth"'
        return value + (", stale=true" if stale else "")

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        try:
            raw = base64.b64decode(nonce, validate=True)
        except ValueError:
            return None
        if len(raw) != 24 or not hmac.compare_digest(raw[8:], hmac.new(self._key, raw[:8], "sha256").digest()[:16]):
            return None
        return now - struct.unpack(">d", raw[:8])[0]

    def verify(self, value: str | None, method: str, username: str, password: str, now: float) -> str:
        """Check one Authorization value against the expected account; a VerifyResult string."""
        if not value:
            return VerifyResult.MISSING
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            return VerifyResult.MISSING
        try:
            p = parse_auth_params(rest)
        except SipParseError:
            return VerifyResult.FAILED
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm not in ALGORITHMS or p.get("realm") != self.realm or p.get("username") != username:
            return VerifyResult.FAILED
        nonce = p.get("nonce", "")
        age = self._nonce_age(nonce, now)
        if age is None or age < -5:
            return VerifyResult.FAILED
        qop = p.get("qop", "")
        if qop not in ("", "auth"):
            return VerifyResult.FAILED
        expected = response_digest(
            algorithm,
            username,
            self.realm,
            password,
            method,
            p.get("uri", ""),
            nonce,
            p.get("nc", ""),
            p.get("cnonce", ""),
            qop,
        )
        # bytes, not str: compare_digest raises TypeError on a non-ASCII str from the peer
        if not hmac.compare_digest(expected.encode("ascii"), p.get("response", "").lower().encode("utf-8", "replace")):
            return VerifyResult.FAILED
        if age > self.lifetime:
            return VerifyResult.STALE  # right password, old nonce: re-challenge with stale=true
        nc_text = p.get("nc", "0" if not qop else "")
        if not _NC_RE.fullmatch(nc_text):  # RFC 7616: exactly 8 hex digits (int(x, 16) takes '+1', ' 1', '1_0')
            return VerifyResult.FAILED
        nc = int(nc_text, 16)
        last = self._nc.get(nonce)
        if last is not None and nc <= last:
            return VerifyResult.FAILED  # replayed (or reordered) credentials
        if qop == "" and last is not None:
            return VerifyResult.FAILED  # without qop there is no counter: a nonce is good once
        self._remember(nonce, nc, now)
        return VerifyResult.OK

    def _remember(self, nonce: str, nc: int, now: float) -> None:
        self._nc[nonce] = nc
        if len(self._nc) > 4096:  # forget nonces that have expired anyway
            self._nc = {
                n: c
                for n, c in self._nc.items()
                if (age := self._nonce_age(n, now)) is not None and age <= self.lifetime
            }
            while len(self._nc) > 4096:
                self._nc.pop(next(iter(self._nc)))
