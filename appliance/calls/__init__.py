"""Where a call comes in: the SIP and modem front-ends side by side, each turning a call into a fax."""
