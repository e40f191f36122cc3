"""Encrypted backups of the configuration and secrets (decision 21).

``fileformat`` is the sealed file (header, scrypt, AES-256-GCM), bytes in and bytes out;
``contents`` is what is inside (which files, their limits), also without I/O; ``bundle`` collects
those files from a state directory and restores them into one, for the web UI and the CLI alike.
"""
