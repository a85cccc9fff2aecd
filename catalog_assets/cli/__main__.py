"""``python -m catalog_assets.cli``: the same as the catalog-assets command."""

import sys

from catalog_assets.cli import main

sys.exit(main())
