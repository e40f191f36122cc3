"""``python -m appliance ...`` is the ``faxbridge`` command."""

import sys

from .cli import main

sys.exit(main())
