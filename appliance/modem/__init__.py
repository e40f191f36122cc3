"""Serial fax modems.

- ``at``: the sans-I/O AT command channel (FIFO commands, results, echo, DLE data phases, the
  traffic ring buffer dumped when a call fails) and the +F value parsers;
- ``serial_port``: the thin asyncio adapter that feeds it from a pyserial file descriptor.

Class 1 and Class 2/2.0 drivers sit on top of these and never touch the port themselves.
"""
