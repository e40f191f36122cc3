"""The front-ends, where a call comes in: SIP and the modem lines, side by side."""
