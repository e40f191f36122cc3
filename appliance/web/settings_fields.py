"""What each settings page edits: its fields and entry editors, and where a key is set, in words.

``formerrors.py`` names a key by the label of its field here, and links to the page that shows it.
"""

from __future__ import annotations

from appliance.config import (
    ROUTE_FORMATS,
    ROUTE_TIFF,
    STARTTLS_MODES,
    T38_MODES,
    PeerConfig,
    RegistrationConfig,
    RouteRuleConfig,
)
from appliance.web.forms import EntrySpec, Field

SYSTEM_FIELDS = [
    Field(
        "system.hostname",
        "Host name",
        help="The box's name on the network: letters, digits and '-'.",
        placeholder="faxbridge",
    ),
    Field(
        "system.timezone",
        "Time zone",
        help="An IANA zone such as Europe/Berlin; empty = the system's.",
        placeholder="Europe/Berlin",
    ),
    Field(
        "fax.ident",
        "This fax machine's number (ident)",
        help="Shown on the sender's machine on every line, SIP and modem, e.g. +49 30 1234567.",
    ),
    Field(
        "system.retention_days",
        "Keep faxes for (days)",
        "int",
        help="Older faxes are deleted with their images; 0 keeps them forever.",
    ),
    Field(
        "delivery.admin",
        "Administrator mail address",
        help="Where the appliance reports faxes it could not deliver; empty = only the log.",
    ),
]

SIP_FIELDS = [
    Field(
        "sip.listen",
        "Listeners",
        "lines",
        help="One per line: udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT. Changes take effect after a restart.",
    ),
    Field("sip.public_address", "Public address", help="The address put in SDP and Contact; empty = the listener's."),
    Field("sip.rtp_ports", "RTP ports", "ints", help="First-last port for call media, e.g. 40000-40999."),
    Field(
        "sip.allow_unknown",
        "Accept calls from anyone",
        "bool",
        help="Also from addresses that match no peer below. Leave off unless the network is closed.",
    ),
    Field("sip.tls_cert", "TLS certificate (PEM file)", help="Needed by a tls: listener; or upload one below."),
    Field("sip.tls_key", "TLS private key (PEM file)"),
    Field("sip.tls_ca", "CA bundle for peers' certificates", help="Empty = the system's store."),
    Field("sip.tls_verify_client", "Require client certificates", "bool"),
]

PEERS = EntrySpec(
    "sip",
    "peers",
    "peers",
    "Peers (gateways and PBXs allowed to call)",
    (
        Field("name", "Name"),
        Field("match", "Address or network", placeholder="192.0.2.10 or 10.1.0.0/16"),
        Field("transport", "Transport", "choice", choices=("", "udp", "tcp", "tls"), help="empty = any"),
        Field(
            "t38",
            "T.38",
            "choice",
            choices=T38_MODES,
            help="off: audio only; accept: answer the gateway's T.38 switch; request: ask for T.38",
        ),
        Field("username", "Digest user", help="When set, this peer must authenticate."),
        Field("password", "Digest password", "secret"),
        Field("t38_max_datagram", "T.38 max datagram", "int", help="0 = believe the gateway"),
        Field(
            "exchange_um",
            "Exchange UM gateway (may name the recipient)",
            "bool",
            help="Only for the gateway or PBX that Exchange UM refers fax calls through: its Referred-By "
            "then chooses the mailbox. From any other peer that header is ignored.",
        ),
        Field(
            "capture",
            "Record call media",
            "bool",
            help="Keeps a packet capture of each call's audio or T.38 from this peer (up to 8 MB a call) in "
            'its "Download call diagnostics" file on the fax page, for a support engineer. It holds '
            "the fax itself: switch it on only while you need it.",
        ),
    ),
    PeerConfig,
    label=lambda i, v: f"sip.peers[{i}]",
)

REGISTRATIONS = EntrySpec(
    "sip",
    "registrations",
    "regs",
    "Registrations (accounts kept registered at a PBX)",
    (
        Field("name", "Name"),
        Field("registrar", "Registrar", placeholder="sip:pbx.example:5060;transport=tcp"),
        Field("user", "User"),
        Field("auth_user", "Authentication user", help="when it differs from User"),
        Field("password", "Password", "secret"),
        Field("domain", "Domain"),
        Field("expires", "Expires (s)", "int"),
        Field("outbound_proxy", "Outbound proxy"),
        Field("contact_user", "Contact user"),
    ),
    RegistrationConfig,
    label=lambda i, v: f"sip.registrations[{i}]",
    key_fields=("name", "registrar", "user"),
)

MODEM_FIELDS = [
    Field(
        "modem.devices", "Devices", "lines", help="One per line; prefer /dev/serial/by-id/... (stable when re-plugged)."
    ),
    Field(
        "modem.class_preference",
        "Class preference",
        "list",
        help="The first class the modem offers wins: 1.0, 1, 2.0, 2.",
    ),
    Field("modem.rings", "Rings before answering", "int"),
    Field("modem.caller_id", "Ask the modem for caller ID", "bool"),
    Field(
        "modem.ident",
        "Fax ident on modem calls",
        help="Digits, spaces and '+'; empty = this fax machine's number on the System page.",
    ),
    Field("modem.speed", "Serial speed (baud)", "int", help="115200 for almost every USB modem."),
    Field("modem.flow_control", "Flow control", "choice", choices=("rtscts", "xonxoff", "none")),
    Field("modem.init", "Extra AT commands", "lines", help="Sent after the modem's own init, one per line."),
    Field("modem.auto_adopt", "Use any modem that is plugged in", "bool"),
    Field("modem.ecm", "Error correction (ECM)", "bool"),
]

ROUTING_FIELDS = [
    Field("routing.default", "Default mailbox", help="Faxes no rule or number claims go here."),
    Field(
        "routing.accepted_domains",
        "Accepted domains",
        "list",
        placeholder="contoso.com",
        help="Faxes go only to addresses in these mail domains (exact match: list a subdomain "
        "too if it is used); a rule, number or resend to any other domain is refused. "
        "Empty = the default mailbox's domain.",
    ),
    Field(
        "routing.called",
        "By called number",
        "pairs",
        help="One 'number = address' a line, e.g. 5551000 = sales@example.com.",
    ),
]

RULES = EntrySpec(
    "routing",
    "rules",
    "rules",
    "Rules (the first rule that matches wins)",
    (
        Field("name", "Name"),
        Field("called", "Called number"),
        Field("called_prefix", "Called number starts with"),
        Field("called_pattern", "Called number pattern (regex)"),
        Field("line", "Line", placeholder="modem:* or sip:gw1"),
        Field("caller", "Caller number"),
        Field("caller_prefix", "Caller number starts with"),
        Field("tsi", "Sender ident (regex)"),
        Field("um_recipient", "Exchange UM referral", "tristate", help="empty = any; true, false or a regex"),
        Field("to", "To", "list"),
        Field("cc", "Cc", "list"),
        Field("use_um_recipient", "Deliver to the UM recipient", "bool"),
        Field("format", "Format", "choice", choices=ROUTE_FORMATS),
        Field("tiff", "TIFF flavour", "choice", choices=("",) + ROUTE_TIFF, help="empty = tiff-f"),
        Field("subject", "Subject", help="e.g. Fax from {caller} ({pages} pages)"),
    ),
    RouteRuleConfig,
    label=lambda i, v: RouteRuleConfig.label(i, v),
    key_fields=("name", "to", "called", "called_prefix", "caller", "line", "tsi"),
    ordered=True,
)

DELIVERY_BACKENDS = ("smtp", "direct", "graph", "maildir")
G_MAIN = "Where faxes go"
G_SERVER = "Mail server (smtp and direct)"
G_OAUTH = "Microsoft 365 sign-in (graph, or smtp with sign-in oauth2)"
G_MORE = "More"
DELIVERY_FIELDS = [
    Field(
        "delivery.backend",
        "Backend",
        "choice",
        choices=DELIVERY_BACKENDS,
        group=G_MAIN,
        help="smtp: a mail server or relay connector; direct: the recipient domain's MX; "
        "graph: Microsoft Graph; maildir: a local folder.",
    ),
    Field(
        "delivery.url",
        "Server or folder",
        group=G_MAIN,
        placeholder="smtp://mail.example.com:587",
        help="smtp: smtp://host:port or smtps://host:port; maildir: a folder; not used by direct and graph.",
    ),
    Field("delivery.from", "Sender address (From)", group=G_MAIN),
    Field(
        "delivery.starttls",
        "STARTTLS",
        "choice",
        choices=STARTTLS_MODES,
        group=G_SERVER,
        help="(default) = required, except for a server on this box (localhost), where it is used when "
        "offered. opportunistic sends in clear when the server offers no STARTTLS.",
    ),
    Field(
        "delivery.auth",
        "Sign-in",
        "choice",
        choices=("", "password", "oauth2", "none"),
        group=G_SERVER,
        help="empty = password when a user name is set",
    ),
    Field("delivery.username", "User name", group=G_SERVER),
    Field("delivery.password", "Password", "secret", group=G_SERVER),
    Field(
        "delivery.ca_file",
        "CA bundle",
        group=G_SERVER,
        help="To trust a private mail server's certificate; empty = system.",
    ),
    Field("delivery.verify_tls", "Verify the server's certificate", "bool", group=G_SERVER),
    Field(
        "delivery.tls_client_cert",
        "TLS client certificate",
        group=G_SERVER,
        help="For a certificate-matched relay connector.",
    ),
    Field("delivery.tls_client_key", "TLS client key", group=G_SERVER),
    Field("delivery.dns_servers", "DNS servers (direct)", "list", group=G_SERVER, help="Empty = the system's."),
    Field("delivery.tenant", "Tenant (directory) ID or domain", group=G_OAUTH),
    Field("delivery.client_id", "Application (client) ID", group=G_OAUTH),
    Field("delivery.client_secret", "Client secret", "secret", group=G_OAUTH, help="The secret's Value, not its ID."),
    Field(
        "delivery.client_secret_expires",
        "Client secret expires",
        group=G_OAUTH,
        placeholder="YYYY-MM-DD",
        help="The date in the secret's Expires column: the dashboard warns 30 days before.",
    ),
    Field(
        "delivery.client_certificate",
        "Client certificate (PEM with key)",
        group=G_OAUTH,
        help="Instead of a client secret.",
    ),
    Field("delivery.graph_url", "Microsoft Graph URL", group=G_OAUTH, help="Only for national clouds."),
    Field("delivery.archive", "Archive Maildir", group=G_MORE, help="A local copy of every fax; empty = none."),
    Field(
        "delivery.max_message_bytes",
        "Largest message (bytes)",
        "int",
        group=G_MORE,
        help="The server's or mailbox's limit (Exchange Online 35 MB, Exchange Server 10 MB by default).",
    ),
]

SECTIONS = [
    ("system", "System"),
    ("sip", "SIP"),
    ("modem", "Modems"),
    ("routing", "Routing"),
    ("delivery", "Delivery"),
    ("backup", "Backup"),
]
#: (endpoint, title, fields, entry editors) of every settings page: where a key is set, in words
PAGE_FIELDS: list[tuple[str, str, list[Field], tuple[EntrySpec, ...]]] = [
    ("settings.system", "System", SYSTEM_FIELDS, ()),
    ("settings.sip", "SIP", SIP_FIELDS, (PEERS, REGISTRATIONS)),
    ("settings.modem", "Modems", MODEM_FIELDS, ()),
    ("settings.routing", "Routing", ROUTING_FIELDS, (RULES,)),
    ("settings.delivery", "Delivery", DELIVERY_FIELDS, ()),
]
