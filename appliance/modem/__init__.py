"""Serial fax modems.

- ``at``: the sans-I/O AT command channel (FIFO commands, results, echo, DLE data phases, the
  traffic ring buffer dumped when a call fails) and the +F value parsers;
- ``serial_port``: the thin asyncio adapter that feeds it from a pyserial file descriptor;
- ``probe`` and ``quirks``: which modem this is, which fax class to use, what it needs beyond the
  standard (after HylaFAX's config prototypes);
- ``line``: one device from probe to answered call (rings, caller ID, the spool hooks, errors,
  removal), with the class drivers looked up when a call is answered;
- ``manager`` and ``hotplug``: all lines of the appliance, udev add/remove events.

Class 1 and Class 2/2.0 drivers sit on top of these and never touch the port themselves.
"""
