"""The [outbound] section and [[outbound.routes]]: defaults, a full example, every bad value named by
its key, and check-config printing them."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from appliance.config import Config, ConfigError
from tests.budgets import LOADED

REPO = Path(__file__).resolve().parents[2]
ROUTE = {"name": "pbx", "match": "^\\+1", "via": "sip:{number}@pbx.example.com"}


#: a modem for the modem routes (their line is checked against modem.devices)
MODEM = {"devices": ["/dev/ttyUSB0"]}


def _errors(outbound: dict, **sections: dict) -> list[str]:
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"outbound": outbound, "modem": MODEM} | sections)
    return err.value.errors


def test_defaults_send_nothing_and_need_no_route() -> None:
    o = Config.from_dict({}).outbound
    assert (o.enabled, o.routes, o.smtp_listen, o.graph_mailbox, o.report) == (False, [], [], "", "always")
    assert (o.international_prefix, o.national_prefix, o.resolution, o.max_pages) == ("00", "0", "fine", 50)


def test_full_example_loads(tmp_path: Path) -> None:
    f = tmp_path / "faxbridge.toml"
    f.write_text(r"""
[outbound]
enabled = true
ident = "+1 212 555 1000"
header = "{name} {ident} {date} {time} page {page}/{pages}"
name = "Contoso Ltd."
resolution = "standard"
country_code = "1"
area_code = "212"
international_prefix = "011"
national_prefix = "1"
max_pages = 20
max_bytes = 10_000_000
smtp_listen = ["0.0.0.0:25", "[::]:2525"]
domain = "fax.example.com"
allowed_senders = ["*@example.com", "fax-?@example.org"]
trusted_relays = ["192.0.2.10", "10.0.0.0/8", "2001:db8::/32"]
graph_mailbox = "fax@contoso.com"
graph_poll_seconds = 30
report = "failure"

[[outbound.routes]]
name = "pbx"
match = "^\\+1"
via = "sip:{number}@pbx.example.com:5070;transport=tcp"
number_format = "national"
dial_prefix = "9"
t38 = "request"
forbid = ["premium", "international"]
retries = [60, 600]
max_calls = 4

[modem]
devices = ["/dev/serial/by-id/usb-USRobotics_USB_Modem-if00"]

[[outbound.routes]]
name = "modem"
match = "."
via = "modem:/dev/serial/by-id/usb-USRobotics_USB_Modem-if00"
number_format = "international"
dial_prefix = "9,"
forbid = ["premium"]
""")
    o = Config.load(f).outbound
    assert (o.enabled, o.ident, o.name, o.resolution, o.max_pages, o.max_bytes) == (
        True, "+1 212 555 1000", "Contoso Ltd.", "standard", 20, 10_000_000)
    assert (o.country_code, o.area_code, o.international_prefix, o.national_prefix) == ("1", "212", "011", "1")
    assert o.smtp_listen == ["0.0.0.0:25", "[::]:2525"] and o.domain == "fax.example.com"
    assert o.trusted_relays[2] == "2001:db8::/32" and o.graph_poll_seconds == 30 and o.report == "failure"
    pbx, modem = o.routes
    assert (pbx.name, pbx.kind, pbx.number_format, pbx.dial_prefix, pbx.t38, pbx.forbid) == (
        "pbx", "sip", "national", "9", "request", ["premium", "international"])
    assert (pbx.retries, pbx.max_calls) == ([60, 600], 4)
    assert pbx.sip_uri("912125550123") == "sip:912125550123@pbx.example.com:5070;transport=tcp"
    assert (modem.kind, modem.target, modem.retries, modem.t38) == (
        "modem", "/dev/serial/by-id/usb-USRobotics_USB_Modem-if00", [120, 300, 600], "accept")
    assert o.route("modem") is modem and o.route("nope") is None


@pytest.mark.parametrize("outbound, expected", [
    # the section
    ({"enabled": True}, 'outbound.routes: sending is enabled but there is no route out: add an [[outbound.routes]] '
                        'entry (name, match = "^\\\\+", via = "sip:{number}@pbx.example.com" or "modem:any")'),
    ({"enabled": "yes"}, "outbound.enabled: expected true or false, got str"),
    ({"smtp_port": 25}, "outbound.smtp_port: unknown key (did you mean 'smtp_listen'?)"),
    ({"ident": "FAX 1"}, "outbound.ident: at most 20 characters of digits, spaces and '+'"),
    ({"ident": "+1 555 1000 1000 1000 1"}, "outbound.ident: at most 20 characters of digits, spaces and '+'"),
    ({"header": "{ident} {dtae}"}, "outbound.header: unknown placeholder {dtae} (known: {ident}, {date}, {time}, "
                                   "{page}, {pages}, {name}) (did you mean date?)"),
    ({"header": "{page:>3}"}, "outbound.header: placeholder {page}: no format spec or conversion allowed"),
    ({"header": "{ident"}, "outbound.header: expected '}' before end of string"),
    ({"header": "x" * 101}, "outbound.header: at most 100 printable characters"),
    ({"header": "a\r\nBcc: x"}, "outbound.header: at most 100 printable characters"),
    ({"name": "Contoso\n"}, "outbound.name: at most 60 printable characters"),
    ({"resolution": "superfine"}, "outbound.resolution: must be one of fine, standard, not 'superfine' "
                                  "(did you mean 'fine'?)"),
    ({"max_pages": 0}, "outbound.max_pages: must be between 1 and 1000"),
    ({"max_pages": 1001}, "outbound.max_pages: must be between 1 and 1000"),
    ({"max_bytes": 5}, "outbound.max_bytes: must be between 10000 and 200000000 (200 MB)"),
    ({"report": "sometimes"}, "outbound.report: must be one of always, failure, never, not 'sometimes'"),
    ({"report": "Failure"}, "outbound.report: must be one of always, failure, never, not 'Failure' "
                            "(did you mean 'failure'?)"),
    ({"graph_poll_seconds": 5}, "outbound.graph_poll_seconds: must be between 10 and 3600"),
    # numbering
    ({"country_code": "+49"}, "outbound.country_code: '+49' must be 1-3 digits (1, 44, 49, ...; no + or 00)"),
    ({"country_code": "0049"}, "outbound.country_code: '0049' must be 1-3 digits (1, 44, 49, ...; no + or 00)"),
    ({"country_code": "049"}, "outbound.country_code: '049': no country code starts with 0"),
    ({"country_code": "4"}, "outbound.country_code: '4' is only the start of a country code (1, 44, 49, ...)"),
    ({"country_code": "٤٩"}, "outbound.country_code: '٤٩' must be 1-3 digits (1, 44, 49, ...; no + or 00)"),
    ({"area_code": "30"}, "outbound.area_code: needs outbound.country_code"),
    ({"country_code": "49", "area_code": "030"}, "outbound.area_code: '030': write it without the trunk prefix "
                                                 "'0' ('30')"),
    ({"country_code": "49", "area_code": "30-"}, "outbound.area_code: '30-' must be 1-6 digits, without the trunk "
                                                 "prefix (30 for Berlin, not 030)"),
    ({"country_code": "1", "area_code": "21", "national_prefix": "1"},
     "outbound.area_code: '21': NANP area codes have 3 digits"),
    ({"international_prefix": "+"}, "outbound.international_prefix: '+' must be 1-4 digits (00, or 011 in the NANP)"),
    ({"national_prefix": "00x"}, "outbound.national_prefix: '00x' must be 1-2 digits (0, or 1 in the NANP; \"\" "
                                 "where there is none)"),
    ({"international_prefix": "0", "national_prefix": "0"},
     "outbound.national_prefix: must differ from outbound.international_prefix"),
    # mail in
    ({"smtp_listen": ["fax.example.com:25"], "domain": "fax.example.com"},
     "outbound.smtp_listen[0]: 'fax.example.com:25': 'fax.example.com' does not appear to be an IPv4 or IPv6 "
     "address (e.g. 0.0.0.0:25)"),
    ({"smtp_listen": ["[::]:99999"], "domain": "fax.example.com"},
     "outbound.smtp_listen[0]: '[::]:99999': port 99999 is out of range (1-65535) (e.g. 0.0.0.0:25)"),
    ({"smtp_listen": ["0.0.0.0:25", "0.0.0.0"], "domain": "fax.example.com"},
     "outbound.smtp_listen[1]: '0.0.0.0' is listed twice"),
    ({"smtp_listen": "0.0.0.0:25"}, "outbound.smtp_listen: expected a list of a string, got str"),
    ({"smtp_listen": ["0.0.0.0:25"]}, "outbound.domain: the mail-to-fax listener (smtp_listen) needs the domain "
                                      "mail is sent to"),
    ({"domain": "fax@example.com"}, "outbound.domain: 'fax@example.com': write the domain alone, e.g. "
                                    "fax.example.com"),
    ({"domain": "*.example.com"}, "outbound.domain: '*.example.com' is not a domain name (IDNs in their xn-- form)"),
    ({"domain": "-fax.example.com"}, "outbound.domain: '-fax.example.com' is not a domain name (IDNs in their "
                                     "xn-- form)"),
    ({"allowed_senders": ["example.com"]}, "outbound.allowed_senders[0]: 'example.com' is not an address or a glob "
                                           "of one (*@example.com, fax-*@example.com; * and ? only)"),
    ({"allowed_senders": ["*@example.com", "a b@example.com"]},
     "outbound.allowed_senders[1]: 'a b@example.com' is not an address or a glob of one (*@example.com, "
     "fax-*@example.com; * and ? only)"),
    ({"allowed_senders": ["*@"]}, "outbound.allowed_senders[0]: '*@' is not an address or a glob of one "
                                  "(*@example.com, fax-*@example.com; * and ? only)"),
    ({"allowed_senders": ["[a-z]*@example.com"]}, "outbound.allowed_senders[0]: '[a-z]*@example.com' is not an "
                                                  "address or a glob of one (*@example.com, fax-*@example.com; * "
                                                  "and ? only)"),
    ({"trusted_relays": ["10.0.0.300"]}, "outbound.trusted_relays[0]: '10.0.0.300' is not an IP address or network "
                                         "(10.0.0.0/8)"),
    ({"trusted_relays": ["mail.example.com"]}, "outbound.trusted_relays[0]: 'mail.example.com' is not an IP "
                                               "address or network (10.0.0.0/8)"),
    ({"graph_mailbox": "fax"}, "outbound.graph_mailbox: 'fax' is not a mail address: an email address must have "
                               "an @-sign"),
    # routes
    ({"routes": {"name": "x"}}, "outbound.routes: expected an array of tables ([[outbound.routes]])"),
    ({"routes": [{"nmae": "x"}]}, "outbound.routes[0].nmae: unknown key (did you mean 'name'?)"),
    ({"routes": [{}]}, "outbound.routes[0].name: missing (each route needs a name: the queue and the reports use it)"),
    ({"routes": [{}]}, 'outbound.routes[0].match: missing (a regex on the E.164 number, e.g. "^\\\\+1"; "." for '
                       'every number)'),
    ({"routes": [{}]}, "outbound.routes[0].via: '': must be a SIP URI with {number} (sip:{number}@pbx.example.com) "
                       "or modem:<line> or modem:any"),
    ({"routes": [ROUTE | {"name": "a b"}]}, "outbound.routes[0].name: 'a b': letters, digits, '.', '_' and '-', at "
                                            "most 32, starting with a letter or digit"),
    ({"routes": [ROUTE, ROUTE]}, "outbound.routes[1].name: 'pbx' is used twice"),
    ({"routes": [ROUTE | {"match": "("}]}, "outbound.routes[0].match: bad regex '(': missing ), unterminated "
                                           "subpattern at position 0"),
    ({"routes": [ROUTE | {"match": "a{99999999999}"}]}, "outbound.routes[0].match: bad regex 'a{99999999999}': the "
                                                        "repetition number is too large"),
    ({"routes": [ROUTE | {"via": "sip:pbx.example.com"}]},
     "outbound.routes[0].via: 'sip:pbx.example.com': needs {number} once, where the number goes "
     "(sip:{number}@pbx.example.com), and no other braces"),
    ({"routes": [ROUTE | {"via": "sip:{number}@{host}"}]},
     "outbound.routes[0].via: 'sip:{number}@{host}': needs {number} once, where the number goes "
     "(sip:{number}@pbx.example.com), and no other braces"),
    ({"routes": [ROUTE | {"via": "sip:{number}{number}@pbx"}]},
     "outbound.routes[0].via: 'sip:{number}{number}@pbx': needs {number} once, where the number goes "
     "(sip:{number}@pbx.example.com), and no other braces"),
    ({"routes": [ROUTE | {"via": "sip:{number}@pbx example"}]},
     "outbound.routes[0].via: 'sip:{number}@pbx example' is not a SIP URI once {number} is filled in "
     "(sip:{number}@host[:port][;transport=udp|tcp|tls])"),
    ({"routes": [ROUTE | {"via": "sip:{number}@pbx;transport=sctp"}]},
     "outbound.routes[0].via: 'sip:{number}@pbx;transport=sctp' is not a SIP URI once {number} is filled in "
     "(sip:{number}@host[:port][;transport=udp|tcp|tls])"),
    ({"routes": [ROUTE | {"via": "sip:{number}@pbx:0"}]},
     "outbound.routes[0].via: 'sip:{number}@pbx:0' is not a SIP URI once {number} is filled in "
     "(sip:{number}@host[:port][;transport=udp|tcp|tls])"),
    ({"routes": [ROUTE | {"via": "sip:pbx.example.com;user={number}"}]},
     "outbound.routes[0].via: 'sip:pbx.example.com;user={number}': {number} belongs in the user part, before the '@'"),
    ({"routes": [ROUTE | {"via": "tel:{number}"}]}, "outbound.routes[0].via: 'tel:{number}': must be a SIP URI with "
                                                    "{number} (sip:{number}@pbx.example.com) or modem:<line> or "
                                                    "modem:any"),
    ({"routes": [ROUTE | {"via": "modem:", "number_format": "international"}]},
     "outbound.routes[0].via: 'modem:': after 'modem:' a device path (/dev/ttyUSB0), a line name (ttyUSB0) or 'any'"),
    ({"routes": [ROUTE | {"via": "modem:tty USB0", "number_format": "international"}]},
     "outbound.routes[0].via: 'modem:tty USB0': after 'modem:' a device path (/dev/ttyUSB0), a line name (ttyUSB0) "
     "or 'any'"),
    ({"routes": [ROUTE | {"via": "modem:/dev/tty USB0", "number_format": "international"}]},
     "outbound.routes[0].via: 'modem:/dev/tty USB0': after 'modem:' a device path (/dev/ttyUSB0), a line name "
     "(ttyUSB0) or 'any'"),
    ({"routes": [ROUTE | {"via": "modem:any"}]}, "outbound.routes[0].number_format: a modem cannot dial '+': use "
                                                 "international, national or local on a modem route"),
    ({"routes": [ROUTE | {"number_format": "E164"}]}, "outbound.routes[0].number_format: must be one of e164, "
                                                      "international, national, local, not 'E164' (did you mean "
                                                      "'e164'?)"),
    ({"routes": [ROUTE | {"dial_prefix": "9,"}]}, "outbound.routes[0].dial_prefix: '9,': at most 8 of digits and '*'"),
    ({"routes": [ROUTE | {"dial_prefix": "9#"}]}, "outbound.routes[0].dial_prefix: '9#': at most 8 of digits and '*'"),
    ({"routes": [ROUTE | {"via": "modem:any", "number_format": "international", "dial_prefix": "9W"}]},
     "outbound.routes[0].dial_prefix: '9W': at most 8 of digits and '*' (',' for a pause)"),
    ({"routes": [ROUTE | {"dial_prefix": "123456789"}]},
     "outbound.routes[0].dial_prefix: '123456789': at most 8 of digits and '*'"),
    ({"routes": [ROUTE | {"t38": "yes"}]}, "outbound.routes[0].t38: must be off, accept or request, not 'yes'"),
    ({"routes": [ROUTE | {"forbid": ["premium", "internatonal"]}]},
     "outbound.routes[0].forbid[1]: must be one of emergency, premium, international, national, local, not "
     "'internatonal' (did you mean 'international'?)"),
    ({"routes": [ROUTE | {"forbid": "premium"}]}, "outbound.routes[0].forbid: expected a list of a string, got str"),
    ({"routes": [ROUTE | {"retries": [60] * 11}]}, "outbound.routes[0].retries: at most 10 retries, not 11"),
    ({"routes": [ROUTE | {"retries": [60, 5, 100000]}]},
     "outbound.routes[0].retries: each between 10 and 86400 seconds, not 5"),
    ({"routes": [ROUTE | {"retries": [60.5]}]}, "outbound.routes[0].retries: expected a list of an integer, got list"),
    ({"routes": [ROUTE | {"max_calls": 0}]}, "outbound.routes[0].max_calls: must be between 1 and 32"),
    ({"routes": [ROUTE | {"max_calls": 33}]}, "outbound.routes[0].max_calls: must be between 1 and 32"),
    # routes against the numbering
    ({"routes": [ROUTE | {"forbid": ["international"]}]},
     "outbound.routes[0].forbid: 'international' needs outbound.country_code (which country is ours)"),
    ({"routes": [ROUTE | {"forbid": ["premium", "local"]}]},
     "outbound.routes[0].forbid: 'local' needs outbound.country_code (which country is ours)"),
    ({"routes": [ROUTE | {"number_format": "national"}]},
     "outbound.routes[0].number_format: 'national' needs outbound.country_code"),
    ({"international_prefix": "", "routes": [ROUTE | {"number_format": "international"}]},
     "outbound.routes[0].number_format: 'international' needs outbound.international_prefix (for numbers abroad)"),
])
def test_bad_values_name_the_key(outbound: dict, expected: str) -> None:
    errors = _errors(outbound)
    assert expected in errors, errors


@pytest.mark.parametrize("outbound", [
    {"enabled": True, "routes": [ROUTE]},
    {"routes": [ROUTE | {"forbid": ["emergency", "premium"]}]},  # premium needs no country: a table by country code
    {"country_code": "39", "national_prefix": "", "routes": [ROUTE | {"number_format": "national"}]},  # Italy
    {"routes": [ROUTE | {"via": "sip:{number}@[2001:db8::1]:5070;transport=tcp"}]},
    {"routes": [ROUTE | {"via": "sip:{number}@192.0.2.1"}]},
    {"routes": [ROUTE | {"via": "modem:ttyUSB0", "number_format": "international", "dial_prefix": "0,,"}]},
    {"routes": [ROUTE | {"via": "modem:any", "number_format": "international", "retries": []}]},
    {"smtp_listen": ["127.0.0.1:2525"], "domain": "Fax.Example.COM."},
    {"allowed_senders": ["fax-?@example.org", "*@*.example.com"], "trusted_relays": ["::1", "10.1.0.0/16"]},
])
def test_good_values_load(outbound: dict) -> None:
    Config.from_dict({"outbound": outbound, "modem": MODEM})


@pytest.mark.parametrize("sections, expected", [
    ({"modem": {}}, "outbound.routes[0].via: 'modem:any': no modem is configured (modem.devices, or "
                    "modem.auto_adopt)"),
    ({"modem": MODEM, "via": "modem:/dev/ttyUSB1"}, "outbound.routes[0].via: '/dev/ttyUSB1' is not one of "
                                                    "modem.devices"),
    ({"modem": {"devices": ["/dev/ttyUSB0", "/dev/serial/by-id/usb-x-if00"]}, "via": "modem:ttyACM0"},
     "outbound.routes[0].via: no modem line 'ttyACM0' among modem.devices (lines: ttyUSB0, usb-x-if00)"),
    ({"via": "sip:{number}@pbx.example.com;transport=tls"},
     "outbound.routes[0].via: a tls call needs a tls listener in sip.listen"),
    ({"via": "sips:{number}@pbx.example.com"}, "outbound.routes[0].via: a tls call needs a tls listener in sip.listen"),
    ({"via": "sip:{number}@pbx.example.com;transport=tcp", "sip": {"listen": ["udp:0.0.0.0:5060"]}},
     "outbound.routes[0].via: a tcp call needs a tcp listener in sip.listen"),
])
def test_each_way_out_must_exist(sections: dict, expected: str) -> None:
    """A route's modem line must be among modem.devices, its SIP transport among the listeners."""
    sections = dict(sections)
    route = {"name": "r", "match": ".", "via": sections.pop("via", "modem:any"), "number_format": "international"}
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"outbound": {"routes": [route]}, **sections})
    assert expected in err.value.errors, err.value.errors


def test_a_malformed_way_out_is_said_once() -> None:
    errors = _errors({"routes": [ROUTE | {"via": "modem:"}, ROUTE | {"name": "b", "via": "sip:pbx.example.com"}]},
                     sip={"listen": ["udp:0.0.0.0:5060"]})
    assert [e for e in errors if ".via:" in e] == [
        "outbound.routes[0].via: 'modem:': after 'modem:' a device path (/dev/ttyUSB0), a line name (ttyUSB0) or 'any'",
        "outbound.routes[1].via: 'sip:pbx.example.com': needs {number} once, where the number goes "
        "(sip:{number}@pbx.example.com), and no other braces",
    ], errors


@pytest.mark.parametrize("sections, via", [
    ({"modem": {"auto_adopt": True}}, "modem:/dev/ttyUSB7"),  # any modem plugged in may be the line
    ({"modem": {"auto_adopt": True}}, "modem:any"),
    ({"modem": {"devices": ["/dev/serial/by-id/usb-x-if00"]}}, "modem:usb-x-if00"),
    ({"modem": {"devices": ["/dev/serial/by-id/usb-x-if00"]}}, "modem:/dev/serial/by-id/usb-x-if00"),
    ({"sip": {"listen": ["udp:0.0.0.0:5060"]}}, "sip:{number}@pbx.example.com"),
])
def test_ways_out_that_exist(sections: dict, via: str) -> None:
    route = {"name": "r", "match": ".", "via": via, "number_format": "international"}
    Config.from_dict({"outbound": {"routes": [route]}, **sections})


def test_every_problem_at_once_each_by_its_key() -> None:
    errors = _errors({"enabled": True, "report": "x", "routes": [{"name": "a", "match": "(", "via": "x"}]})
    keys = [e.split(": ", 1)[0] for e in errors]
    assert keys == ["outbound.report", "outbound.routes[0].match", "outbound.routes[0].via"], errors


def test_check_config_prints_the_outbound_problems(tmp_path: Path) -> None:
    f = tmp_path / "faxbridge.toml"
    f.write_text("""
[outbound]
enabled = true
country_code = "49"
area_code = "030"
[[outbound.routes]]
name = "pbx"
match = "^\\\\+49"
via = "sip:pbx.example.com"
forbid = ["premum"]
""")
    out = subprocess.run([sys.executable, "-m", "appliance", "check-config", str(f)], cwd=REPO,
                         capture_output=True, text=True, timeout=LOADED)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: outbound.area_code: '030': write it without the trunk prefix '0' ('30')",
        "error: outbound.routes[0].via: 'sip:pbx.example.com': needs {number} once, where the number goes "
        "(sip:{number}@pbx.example.com), and no other braces",
        "error: outbound.routes[0].forbid[0]: must be one of emergency, premium, international, national, local, "
        "not 'premum' (did you mean 'premium'?)",
    ], out.stderr
    assert "3 problem(s)" in out.stderr


def test_check_config_says_how_numbers_go_out(tmp_path: Path) -> None:
    f = tmp_path / "faxbridge.toml"
    f.write_text('[outbound]\nenabled = true\ncountry_code = "49"\narea_code = "30"\n'
                 '[[outbound.routes]]\nname = "pbx"\nmatch = "^\\\\+49"\nvia = "sip:{number}@pbx.example.com"\n'
                 'number_format = "national"\ndial_prefix = "0"\nforbid = ["premium"]\n')
    out = subprocess.run([sys.executable, "-m", "appliance", "check-config", str(f)], cwd=REPO,
                         capture_output=True, text=True, timeout=LOADED)
    assert out.returncode == 0, out.stderr
    assert "outbound: sending is on; numbers without a country code are taken to be in +49, area code 30 " \
           "(international prefix '00', trunk prefix '0')" in out.stdout, out.stdout
    assert "outbound route pbx: numbers matching '^\\\\+49' -> sip:{number}@pbx.example.com (national, " \
           "dial prefix '0'; forbids premium)" in out.stdout, out.stdout


def test_the_readme_outbound_example_loads() -> None:
    readme = (REPO / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if b.startswith("[outbound]")]
    o = Config.from_dict(tomllib.loads(block)).outbound
    assert o.enabled and o.country_code and [r.name for r in o.routes] and all(r.match for r in o.routes)
