"""First boot of an SD card: a unique box, configured from ``faxbridge.txt`` (see run.py)."""
