"""Hardware tests run only when the device they need is named in the environment."""
