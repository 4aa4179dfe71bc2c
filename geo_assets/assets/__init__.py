"""One module per stage of the asset graph."""

import warnings

import dagster as dg

# Dagster marks the asset decorator's `backfill_policy` as beta; partition ranges are built on it
# (docs/guide/launching.md, "Backfills"), so say it once here rather than at every load of the code location.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
