"""The tile engine: tile work in batches, the same in a step's process and on a Dask worker.

- `batches`: one batch of work over tiles, timed, its log records captured, its failure returned;
- `jobs`: the plan of a step's tile work (batch sizes from measurements, results, progress);
- `ledger`: completion records, so a re-execution computes only the tiles not done;
- `threads`: process-wide thread pools whose threads keep GDAL's per-thread state.

It knows the store and nothing else of the project: geospatial and ML code hand it their work, and the
compute resources (resources/compute.py, resources/dask_compute.py) run its batches.
"""
