# `faxbridge queue`, `faxbridge check-config` and friends over SSH use the box's state directory
export FAXBRIDGE_STATE_DIR=/var/lib/faxbridge
