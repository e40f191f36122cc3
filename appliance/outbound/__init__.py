"""Sending faxes: the ways in (mail, web, API), rendering, the durable queue, the ways out (SIP,
modem) and the report back. See docs/architecture.md, "Sending"."""
