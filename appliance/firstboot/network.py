"""systemd-networkd and wpa_supplicant files from faxbridge.txt's settings (text only, no I/O).

The wired port always gets a file (DHCP unless a static address is given and Wi-Fi is not set);
with a Wi-Fi network named, the static address (if any) goes on Wi-Fi and the wired port stays
on DHCP, so one address is never on two interfaces.
"""

from __future__ import annotations

import hashlib

from appliance.firstboot.bootconfig import BootConfig

WIRED = "etc/systemd/network/10-faxbridge-wired.network"
WIRELESS = "etc/systemd/network/20-faxbridge-wireless.network"
WPA = "etc/wpa_supplicant/wpa_supplicant-wlan0.conf"
HEADER = "# Written by faxbridge firstboot from faxbridge.txt on the boot partition; edit that file instead.\n"


def _network(match: str, cfg: BootConfig, static: bool) -> str:
    lines = [HEADER, "[Match]", f"Name={match}", "", "[Network]"]
    if static and cfg.address is not None:
        lines.append(f"Address={cfg.address.with_prefixlen}")
        if cfg.gateway is not None:
            lines.append(f"Gateway={cfg.gateway}")
        lines += [f"DNS={d}" for d in cfg.dns]
    else:
        lines.append("DHCP=yes")
    # mDNS (NAME.local, the web UI's _https._tcp service) is avahi-daemon's, not networkd's
    lines += ["LinkLocalAddressing=ipv6", ""]
    return "\n".join(lines)


def psk(ssid: str, passphrase: str) -> str:
    """WPA's pre-shared key (as wpa_passphrase makes it), so the passphrase itself is not stored
    in the root file system."""
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32).hex()


def files(cfg: BootConfig) -> dict[str, tuple[str, int] | None]:
    """Path under the root -> (text, mode), or None for a file that must not exist."""
    wifi = bool(cfg.wifi_ssid)
    out: dict[str, tuple[str, int] | None] = {WIRED: (_network("e*", cfg, not wifi), 0o644)}
    if not wifi:
        out[WIRELESS] = out[WPA] = None
        return out
    out[WIRELESS] = (_network("wl*", cfg, True), 0o644)
    lines = [HEADER.rstrip("\n"), "ctrl_interface=DIR=/run/wpa_supplicant", "update_config=0"]
    if cfg.wifi_country:
        lines.append(f"country={cfg.wifi_country}")
    lines += ["", "network={", f'    ssid="{cfg.wifi_ssid}"']
    if cfg.wifi_passphrase:
        lines += [f"    psk={psk(cfg.wifi_ssid, cfg.wifi_passphrase)}", "    key_mgmt=WPA-PSK"]
    else:
        lines.append("    key_mgmt=NONE")
    lines += ["}", ""]
    out[WPA] = ("\n".join(lines), 0o600)
    return out
