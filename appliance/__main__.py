"""``python -m appliance ...`` is the ``faxbridge`` command."""

import sys

from appliance.cli import main

sys.exit(main())
