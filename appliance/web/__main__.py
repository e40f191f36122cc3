"""``python -m appliance.web``: start the web UI process."""

from appliance.web.server import main

main()
