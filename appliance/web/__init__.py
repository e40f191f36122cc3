"""The appliance's web UI: a Flask app run as its own process, reading the spool read-only.

It is a separate process so that a bug or crash here never touches a fax call in progress.
"""

from appliance.web.app import create_app

__all__ = ["create_app"]
