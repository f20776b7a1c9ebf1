"""python -m rps_service: same as the rps-service command."""

import sys

from rps_service.cli import main

sys.exit(main())
