"""`python -m geo_assets.cli`: the `geo-assets` command."""

import sys

from geo_assets.cli.commands import main

sys.exit(main())
