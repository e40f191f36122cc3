"""SIP user agent: sans-I/O core (message, sdp, transaction, useragent) and asyncio transports."""
