"""What bench.py reads from a box, judged without a box: pages, API answers, RAUC's status,
certificates, avahi's listing, partition sizes and bundle trailers, shaped as the box sends them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from hwtests import benchparse as bp
from hwtests.benchreport import Status


# -- the web UI ------------------------------------------------------------------------------------
def test_csrf_token_is_read_from_the_pages_meta_tag() -> None:
    page = '<head><meta charset="utf-8">\n<meta name="csrf-token" content="abc-DEF_123"></head>'
    assert bp.csrf_token(page) == "abc-DEF_123"
    assert bp.csrf_token("<html>login</html>") is None


def test_version_comes_from_the_openapi_document() -> None:
    assert bp.api_version({"openapi": "3.1.0", "info": {"title": "x", "version": "0.2.0"}}) == "0.2.0"
    with pytest.raises(bp.BenchParseError, match="no info.version"):
        bp.api_version({"openapi": "3.1.0"})
    with pytest.raises(bp.BenchParseError, match="info.version is ''"):
        bp.api_version({"info": {"version": ""}})


def test_status_names_the_lines_that_do_not_work_and_the_bad_alerts() -> None:
    status = {"daemon_up": True,
              "lines": [{"kind": "SIP listener", "name": "udp:0.0.0.0:5060", "state": "listening", "detail": "",
                         "tone": "ok"},
                        {"kind": "Modem", "name": "ttyACM0", "state": "down", "detail": "no answer to AT",
                         "tone": "bad"}],
              "alerts": [{"level": "bad", "text": "Modem line ttyACM0 is down"},
                         {"level": "warn", "text": "certificate expires soon"}]}
    up, lines, alerts = bp.status_problems(status)
    assert up is True
    assert lines == ["Modem ttyACM0: down no answer to AT"]
    assert alerts == ["Modem line ttyACM0 is down"]
    with pytest.raises(bp.BenchParseError):
        bp.status_problems({"error": "log in first"})


# -- faxes -----------------------------------------------------------------------------------------
def fax(**kw: Any) -> dict[str, Any]:
    base = {"id": 7, "state": "delivered", "complete": True, "caller_number": "555101010", "pages": 2,
            "bit_rate": 14400, "ecm": True, "bad_rows": 0, "resolution": "204x196", "duration": 41.2,
            "result_text": "OK", "jobs": [{"recipient": "faxes@example.test", "state": "delivered", "attempts": 1,
                                           "last_error": ""}]}
    return {**base, **kw}


def test_the_newest_fax_of_this_runs_caller_is_found_and_no_other() -> None:
    listing = {"total": 3, "faxes": [fax(id=9, caller_number="5550100"), fax(id=8), fax(id=5)]}
    assert bp.find_fax(listing, "555101010")["id"] == 8
    assert bp.find_fax(listing, "555999999") is None
    with pytest.raises(bp.BenchParseError, match="no 'faxes' list"):
        bp.find_fax({"error": "log in first"}, "1")


def test_reception_waits_while_receiving_then_judges_the_whole_fax() -> None:
    assert bp.reception_verdict(fax(state="receiving"), 2) is None
    status, detail = bp.reception_verdict(fax(state="routed"), 2)
    assert status is Status.PASS and "2 page(s), 14400 bit/s, ECM on, 0 bad row(s)" in detail
    status, detail = bp.reception_verdict(fax(complete=False, pages=1, result_text="call dropped"), 2)
    assert status is Status.FAIL and "incomplete: call dropped" in detail
    status, detail = bp.reception_verdict(fax(pages=3), 2)
    assert status is Status.FAIL and "2 sent" in detail
    status, detail = bp.reception_verdict(fax(state="no_fax", pages=0, result_text="no fax tones"), 2)
    assert status is Status.FAIL and "no fax tones" in detail


def test_delivery_waits_through_retries_and_fails_only_for_good() -> None:
    retrying = [{"recipient": "a@example.test", "state": "failed_retrying", "attempts": 2,
                 "last_error": "451 try later"}]
    assert bp.delivery_verdict(fax(state="delivering", jobs=[])) is None
    assert bp.delivery_verdict(fax(state="failed_retrying", jobs=retrying)) is None
    assert "a@example.test failed_retrying after 2 attempt(s) (451 try later)" in bp.delivery_pending(
        fax(state="failed_retrying", jobs=retrying))
    status, detail = bp.delivery_verdict(fax())
    assert status is Status.PASS and detail == "fax 7 delivered to faxes@example.test"
    dead = [{"recipient": "a@example.test", "state": "dead", "attempts": 9, "last_error": "550 no such user"}]
    status, detail = bp.delivery_verdict(fax(state="dead", jobs=dead))
    assert status is Status.FAIL and "a@example.test: 550 no such user" in detail
    # a fax marked delivered with a job still open is not finished
    half = fax()["jobs"] + retrying
    assert bp.delivery_verdict(fax(jobs=half)) is None


def test_the_senders_last_result_line_decides() -> None:
    assert bp.sender_result("log line\nOK: OK; G.711 PCMU; 2 page(s) sent at 14400 bit/s, ECM; 36.8 s\n") == (
        True, "OK: OK; G.711 PCMU; 2 page(s) sent at 14400 bit/s, ECM; 36.8 s")
    ok, line = bp.sender_result("FAILED: timed out; no answer\n")
    assert not ok and line.startswith("FAILED:")
    ok, line = bp.sender_result("Traceback (most recent call last):\nOSError: no route\n")
    assert not ok and "no result line" in line and "OSError" in line


def page(marks: list[tuple[int, int]] = ()) -> Image.Image:
    im = Image.new("L", (1728, 400), 255)
    draw = ImageDraw.Draw(im)
    draw.rectangle((100, 100, 300, 200), fill=0)
    for x, y in marks:
        im.putpixel((x, y), 0)
    return im


def test_pages_are_compared_pixel_for_pixel() -> None:
    assert bp.compare_pages([page(), page()], [page(), page()]) == []
    assert bp.compare_pages([page(), page()], [page(), page([(1000, 300)])]) == [
        "page 2 differs in the box (1000, 300, 1001, 301) (sent page's rows)"]
    assert bp.compare_pages([page(), page()], [page()]) == ["1 page(s) received, 2 sent"]
    assert bp.compare_pages([page()], [page().crop((0, 0, 1728, 390))]) == ["page 1: 1728x390 received, 1728x400 sent"]
    # a sending program's header line at the top is left out on request
    assert bp.compare_pages([page()], [page([(5, 10)])], skip_top=40) == []


def efax_received(sent: Image.Image, header_rows: int = 20, short: int = 1) -> Image.Image:
    """What efax's far end receives: a header pushed in on top, the page a row short at the end."""
    im = Image.new("L", (sent.width, sent.height + header_rows - short), 255)
    im.paste(sent.crop((0, 0, sent.width, sent.height - short)), (0, header_rows))
    ImageDraw.Draw(im).text((10, 2), "efax header 12:00", fill=0)
    return im


def test_pages_under_a_fax_programs_header_are_compared_below_it() -> None:
    sent = page([(900, 45)])
    assert bp.compare_pages([sent], [efax_received(sent)], skip_top=40, shift=20) == []
    assert bp.compare_pages([sent], [efax_received(sent)]) == [
        "page 1: 1728x419 received, 1728x400 sent"]  # without the shift: not the same page
    other = page([(900, 46)])
    assert bp.compare_pages([sent], [efax_received(other)], skip_top=40, shift=20) == [
        "page 1 differs in the box (900, 45, 901, 47) (sent page's rows)"]
    assert bp.compare_pages([sent], [efax_received(sent, short=30)], skip_top=40, shift=20) == [
        "page 1: 30 rows missing at the bottom (1728x390 received, 1728x400 sent, 20 added on top)"]


def test_received_tiff_pages_read_back_as_sent(tmp_path: Path) -> None:
    from appliance.fax.pages import write_fax_tiff

    path = tmp_path / "sent.tif"
    write_fax_tiff([page(), page([(1, 1)])], path)
    got = bp.read_tiff_pages(path.read_bytes())
    assert bp.compare_pages([page(), page([(1, 1)])], got) == []


# -- TLS -------------------------------------------------------------------------------------------
def test_the_boxs_own_certificate_is_described(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from appliance.web.tls import ensure_certificate

    cert_path, _ = ensure_certificate(tmp_path, "0.0.0.0", "faxbridge")
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    facts = bp.cert_facts(der)
    assert facts.self_signed and "DNS:faxbridge" in facts.names and "IP:127.0.0.1" in facts.names
    assert facts.names_host("faxbridge") and facts.names_host("LOCALHOST") and facts.names_host("127.0.0.1")
    assert facts.names_host("faxbridge.local")  # the name the box announces over mDNS
    assert not facts.names_host("other.example") and not facts.names_host("192.0.2.1")
    assert len(facts.sha256) == 64 and facts.not_after > facts.not_before
    with pytest.raises(bp.BenchParseError, match="cannot be read"):
        bp.cert_facts(b"not a certificate")


def test_a_wildcard_covers_one_label_only() -> None:
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    facts = bp.CertFacts("00", "CN=x", ("DNS:*.lab.example",), now, now, False)
    assert facts.names_host("box.lab.example")
    assert not facts.names_host("a.box.lab.example") and not facts.names_host("lab.example")


def test_a_pin_is_accepted_as_people_copy_it() -> None:
    hexdigest = "ab" * 32
    assert bp.fingerprint_matches(":".join(["AB"] * 32), hexdigest)
    assert bp.fingerprint_matches(hexdigest.upper(), hexdigest)
    assert not bp.fingerprint_matches("ab" * 31 + "ac", hexdigest)


# -- mDNS ------------------------------------------------------------------------------------------
def test_avahi_browse_lines_are_read() -> None:
    out = ("+;eth0;IPv4;Faxbridge\\032on\\032faxbridge;_https._tcp;local\n"
           "=;eth0;IPv4;Faxbridge\\032on\\032faxbridge;_https._tcp;local;faxbridge.local;192.168.1.50;443;\n"
           "=;eth0;IPv4;printer;_https._tcp;local;printer.local;192.168.1.9;631;\"rp=ipp\"\n"
           "=;eth0;IPv4;broken;_https._tcp;local;x.local;192.168.1.9;notaport;\n")
    assert bp.avahi_services(out) == [bp.MdnsService("Faxbridge on faxbridge", "faxbridge.local", "192.168.1.50", 443),
                                      bp.MdnsService("printer", "printer.local", "192.168.1.9", 631)]


# -- slots -----------------------------------------------------------------------------------------
def rauc_json(booted: str, primary: str, good: dict[str, str] | None = None,
              versions: dict[str, str] | None = None) -> str:
    """Shaped like RAUC 1.8's ``rauc status --detailed --output-format=json`` on the box."""
    good = good or {"rootfs.0": "good", "rootfs.1": "good"}
    versions = versions or {"rootfs.0": "0.1.0", "rootfs.1": "0.2.0"}
    slots = []
    for name, bootname, part in (("rootfs.0", "A", "02"), ("rootfs.1", "B", "03")):
        bundle = ({"compatible": "faxbridge-rpi-arm64", "version": versions[name], "description": None,
                   "build": None, "hash": "9f" * 32} if versions.get(name) else {"compatible": None})
        slots.append({name: {"class": "rootfs", "device": f"/dev/disk/by-partuuid/fa8b0001-{part}", "type": "ext4",
                             "bootname": bootname, "state": "booted" if name == booted else "inactive",
                             "parent": None, "mountpoint": "/" if name == booted else None,
                             "boot_status": good.get(name), "slot_status": {"bundle": bundle, "status": "ok"}}})
    slots.append({"boot.0": {"class": "boot", "device": "/dev/mmcblk0p1", "type": "vfat", "bootname": None,
                             "state": "inactive", "parent": None, "mountpoint": None, "boot_status": None,
                             "slot_status": {"bundle": {"compatible": None}}}})
    return json.dumps({"compatible": "faxbridge-rpi-arm64", "variant": "",
                       "booted": "A" if booted == "rootfs.0" else "B", "boot_primary": primary, "slots": slots})


A = bp.parse_rauc_status(rauc_json("rootfs.0", "rootfs.0", versions={"rootfs.0": "0.1.0", "rootfs.1": ""}))


def test_rauc_status_gives_the_booted_and_committed_slot() -> None:
    assert A.booted == "rootfs.0" and A.primary == "rootfs.0" and A.committed
    assert set(A.slots) == {"rootfs.0", "rootfs.1"}  # the boot partition is not a root slot
    assert A.version() == "0.1.0" and A.version("rootfs.1") == ""
    assert A.describe() == "booted rootfs.0 (A), version 0.1.0, committed"
    trial = bp.parse_rauc_status(rauc_json("rootfs.1", "rootfs.0"))
    assert not trial.committed
    assert trial.describe() == "booted rootfs.1 (B), version 0.2.0, not committed (primary rootfs.0, good)"
    unmarked = bp.parse_rauc_status(rauc_json("rootfs.1", "rootfs.1", good={"rootfs.0": "good", "rootfs.1": "bad"}))
    assert not unmarked.committed


@pytest.mark.parametrize("text, message", [
    ("rauc: command not found", "not JSON"),
    ('{"compatible": "x"}', "no 'slots' list"),
    ('{"slots": [{"boot.0": {"class": "boot"}}]}', "no rootfs slot"),
    ('{"slots": [{"rootfs.0": {"class": "rootfs", "state": "inactive"}}]}', "no slot is in state 'booted'"),
])
def test_an_unexpected_rauc_answer_is_named(text: str, message: str) -> None:
    with pytest.raises(bp.BenchParseError, match=message):
        bp.parse_rauc_status(text)


def s(booted: str, primary: str, **kw: Any) -> bp.Slots:
    return bp.parse_rauc_status(rauc_json(booted, primary, **kw))


def follow(expect: str, steps: list[bp.Slots | None]) -> list[tuple[Status, str] | None]:
    """The verdict after each poll, as bench.py sees them one by one."""
    seen: list[bp.Observation] = []
    verdicts = []
    for n, step in enumerate(steps):
        seen.append((10.0 * n, step))
        verdicts.append(bp.update_verdict(expect, A, seen))
    return verdicts


def test_a_good_update_passes_once_the_new_slot_is_committed() -> None:
    verdicts = follow("commit", [A, None, None, s("rootfs.1", "rootfs.0"), s("rootfs.1", "rootfs.1")])
    assert verdicts[:4] == [None, None, None, None]  # installing, rebooting, on trial
    status, detail = verdicts[4]
    assert status is Status.PASS
    assert detail == ("committed rootfs.1 (version 0.2.0): rootfs.0 (committed) at 0 s, no answer at 10 s, "
                      "rootfs.1 (trial) at 30 s, rootfs.1 (committed) at 40 s")


def test_an_update_that_comes_back_on_the_old_slot_fails_the_commit() -> None:
    status, detail = follow("commit", [A, None, s("rootfs.1", "rootfs.0"), None, A])[-1]
    assert status is Status.FAIL and detail.startswith("rolled back to rootfs.0")


def test_a_broken_bundle_passes_when_the_box_tried_it_and_came_back() -> None:
    verdicts = follow("rollback", [A, None, s("rootfs.1", "rootfs.0"), None,
                                   s("rootfs.0", "rootfs.0", good={"rootfs.0": "good", "rootfs.1": "bad"})])
    assert verdicts[:4] == [None, None, None, None]
    status, detail = verdicts[4]
    assert status is Status.PASS and detail.startswith("rolled back to rootfs.0 (tried, then left rootfs.1)")


def test_a_rollback_seen_only_as_a_slot_marked_bad_passes() -> None:
    back = s("rootfs.0", "rootfs.0", good={"rootfs.0": "good", "rootfs.1": "bad"})
    status, detail = follow("rollback", [A, None, back])[-1]
    assert status is Status.PASS and "(marked bad)" in detail


def test_a_rollback_with_no_sign_of_a_trial_proves_nothing() -> None:
    status, detail = follow("rollback", [A, None, None, A])[-1]
    assert status is Status.FAIL and "never seen running nor marked bad" in detail


def test_a_broken_bundle_that_commits_fails() -> None:
    status, detail = follow("rollback", [A, None, s("rootfs.1", "rootfs.1")])[-1]
    assert status is Status.FAIL and "was committed on rootfs.1" in detail


def test_nothing_is_decided_before_the_box_went_down() -> None:
    assert follow("commit", [A, A, A]) == [None, None, None]
    with pytest.raises(ValueError):
        bp.update_verdict("maybe", A, [(0.0, A)])


# -- the data partition ----------------------------------------------------------------------------
def test_the_data_partition_must_reach_the_end_of_the_card() -> None:
    total = 62333952  # a "32 GB" card, in sectors
    start = 5513216
    status, detail = bp.data_partition_verdict(f"mmcblk0p4 mmcblk0 {start} {total - start - 2048} {total}\n")
    assert status is Status.PASS
    assert detail == "mmcblk0p4 is 27743 MiB, ends 1 MiB before the end of mmcblk0 (30436 MiB)"
    status, detail = bp.data_partition_verdict(f"mmcblk0p4 mmcblk0 {start} {256 * 2048} {total}")
    assert status is Status.FAIL and detail.startswith("not grown: mmcblk0p4 is 256 MiB")
    status, detail = bp.data_partition_verdict("findmnt: can't find target")
    assert status is Status.FAIL and "could not read" in detail


# -- update bundles --------------------------------------------------------------------------------
def test_the_signature_is_found_from_the_bundles_trailer() -> None:
    assert bp.signature_span(10_000, (1500).to_bytes(8, "big")) == (8492, 1500)
    with pytest.raises(bp.BenchParseError, match="not a RAUC bundle"):
        bp.signature_span(1000, (5000).to_bytes(8, "big"))
    with pytest.raises(bp.BenchParseError, match="not a RAUC bundle"):
        bp.signature_span(10_000, bytes(8))
    with pytest.raises(bp.BenchParseError, match="shorter"):
        bp.signature_span(4, b"abcd")


def test_the_bench_pages_and_the_compare_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m hwtests.compare`: the pages a person sends at the bench, and the verdict on
    what arrived (here the sent file itself, then a copy with one pixel changed)."""
    from appliance.fax.pages import write_fax_tiff
    from hwtests import compare

    files = compare.write_pages(tmp_path, 2)
    assert [f.name for f in files] == ["bench-pages.tif", "page1.tif", "page2.tif"]
    assert compare.main(["check", str(files[0]), str(files[1]), str(files[2])]) == 0
    assert "PASS" in capsys.readouterr().out
    pages = bp.read_tiff_pages(files[0].read_bytes())
    pages[1].putpixel((700, 800), 0 if pages[1].getpixel((700, 800)) else 255)
    write_fax_tiff(pages, tmp_path / "changed.tif")
    assert compare.main(["check", str(tmp_path / "changed.tif"), str(files[0])]) == 1
    assert capsys.readouterr().out.startswith("FAIL     page 2 differs in the box (700, 800, 701, 801)")


def test_the_compare_command_takes_the_mail_the_fax_came_in(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from email.message import EmailMessage

    from hwtests import compare

    files = compare.write_pages(tmp_path, 1)
    msg = EmailMessage()
    msg["Subject"] = "Fax from 5550100 (1 page)"
    msg.set_content("a fax")
    msg.add_attachment(files[0].read_bytes(), maintype="image", subtype="tiff", filename="fax.tif")
    (tmp_path / "mail.eml").write_bytes(bytes(msg))
    assert compare.main(["check", str(tmp_path / "mail.eml"), str(files[1])]) == 0
    (tmp_path / "plain.eml").write_text("Subject: no fax\n\nnothing attached\n")
    with pytest.raises(SystemExit, match="neither a TIFF nor a mail with one TIFF"):
        compare.main(["check", str(tmp_path / "plain.eml"), str(files[1])])
