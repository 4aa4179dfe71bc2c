"""Completion records of a step's tile work: what a re-execution of the same run need not compute again."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from geo_assets.geo.store import ObjectNotFoundError, Store

__all__ = ["TileLedger"]


@dataclass(frozen=True)
class TileLedger:
    """Completion records of one step's tile work: a small JSON per finished batch under
    `{prefix}.done/{run}/`, listing each tile's key, the digest of its input and its result entry.
    (Beside the outputs, not among them: a listing of the outputs' prefix finds outputs only, and
    whatever removes a region's outputs removes these too.)

    `run` is the run's root run id: a re-execution of a run (from failure, or a retry) shares it and
    skips the tiles already done for the same input; a new run starts afresh. The records go once the
    step's manifest, which lists every tile, is published (resources/storage.py), not before: a failure
    between the last tile and that write must not cost the tiles. One write per batch, one read per batch record on re-execution: cheap next to
    the tiles themselves.
    """

    store: Store
    prefix: str
    run: str = ""

    @property
    def root(self) -> str:
        return f"{self.prefix}.done"

    def for_run(self, run: str) -> TileLedger:
        return dataclasses.replace(self, run=run)

    def completed(self) -> dict[str, tuple[str, dict]]:
        """key -> (input digest, result entry) of every tile this run has finished. Records left by
        other runs can never count again, so they are removed."""
        done: dict[str, tuple[str, dict]] = {}
        mine = f"{self.root}/{self.run}/"
        for key in self.store.list(self.root):
            if not key.startswith(mine):
                self.store.delete(key)
                continue
            try:
                record = self.store.read_json(key)
            except ObjectNotFoundError:  # removed meanwhile
                continue
            for tile in record["tiles"]:
                done[tile["key"]] = (tile["input"], tile["result"])
        return done

    def forget(self) -> None:
        """Remove every record, and the temporaries of record writes that were killed: the step's
        tile work is complete, and its outputs say the rest."""
        for key in self.store.list(self.root, temporaries=True):
            self.store.delete(key)

    def record(self, keys: Sequence[str], digests: Sequence[str], results: Sequence[dict]) -> None:
        name = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        tiles = [{"key": k, "input": d, "result": r} for k, d, r in zip(keys, digests, results)]
        self.store.write_json(f"{self.root}/{self.run}/{name}.json", {"tiles": tiles})
