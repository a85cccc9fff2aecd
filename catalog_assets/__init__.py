"""catalog-assets: keeps enterprise learning catalogs in sync with course content."""
