"""Serial fax modems: the sans-I/O AT channel and its thin asyncio serial adapter."""
