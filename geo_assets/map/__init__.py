"""See it on a map: a read-only tile server over the store (imagery, predictions, their differences) and
the page that shows them. `links` alone is light: assets import it to put a map link in their metadata."""
