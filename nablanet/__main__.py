"""``python -m nablanet`` is the ``nablanet`` command."""

import sys

from nablanet.cli import main

sys.exit(main())
