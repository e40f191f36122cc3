"""Where a call comes in: the front-ends (SIP calls, modem lines) side by side."""
