"""`python -m etl_assets.cli`: the same commands as the `etl-assets` script."""

from etl_assets.cli import main

main()
