"""The partition lease on each real store (a local folder, the S3 API, the GCS API): of writers racing
for a partition exactly one holds it at a time; a lease of an ended run is taken over, once; the
writer that lost its lease is refused at publish; a waiting writer gives up naming the holder."""

import threading
import time

import pytest

from geo_assets.geo import leases

KEY = leases.lease_key("imagery_tiles", "region=tiny-field/date=2024-06-01")


def test_racing_writers_hold_the_partition_one_at_a_time(any_store):
    writers, inside, overlaps, order = 4, [], [], []
    lock, start = threading.Lock(), threading.Barrier(4)

    def write(run: str) -> None:
        start.wait()
        lease = leases.take(any_store, KEY, run, lambda r: True, wait_s=120, poll_s=0.05)
        with lock:
            inside.append(run)
            if len(inside) > 1:
                overlaps.append(list(inside))
        time.sleep(0.2)  # the writer's work
        leases.check(any_store, lease)  # still its own at publish
        with lock:
            inside.remove(run)
            order.append(run)
        leases.release(any_store, lease)

    threads = [threading.Thread(target=write, args=(f"run-{i}",)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not overlaps, f"two writers held the partition at once: {overlaps}"
    assert sorted(order) == [f"run-{i}" for i in range(writers)]  # every writer got its turn
    assert not any_store.exists(KEY)  # the last one released it


def test_an_ended_runs_lease_is_taken_over_once_and_its_writer_cannot_publish(any_store):
    orphan = leases.take(any_store, KEY, "killed-run", lambda r: True, wait_s=1)
    ended = {"killed-run"}
    takers, busy, lock, start = [], [], threading.Lock(), threading.Barrier(3)

    def take(run: str) -> None:
        start.wait()
        try:
            lease = leases.take(any_store, KEY, run, lambda r: r not in ended, wait_s=0.5, poll_s=0.05)
        except leases.PartitionBusyError as exc:
            busy.append(str(exc))
            return
        with lock:
            takers.append(lease)

    threads = [threading.Thread(target=take, args=(f"new-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    # The takers race for the stale lease: one wins, the others wait for it and give up naming it.
    assert len(takers) == 1, takers
    (winner,) = takers
    assert len(busy) == 2 and all(f"run {winner.run} is writing this partition" in m for m in busy), busy
    assert leases.holds(any_store, winner) and not leases.holds(any_store, orphan)
    with pytest.raises(leases.LeaseLostError, match=f"taken over by run {winner.run}"):
        leases.check(any_store, orphan)
    leases.release(any_store, orphan)  # the orphan's release leaves the new holder's lease alone
    assert leases.holds(any_store, winner)


def test_a_writer_waits_bounded_and_names_the_holder(any_store):
    holder = leases.take(any_store, KEY, "long-run", lambda r: True, wait_s=1)
    messages = []
    with pytest.raises(leases.PartitionBusyError, match="run long-run is writing this partition"):
        leases.take(any_store, KEY, "second-run", lambda r: True, wait_s=1.5, poll_s=0.1, log=messages.append)
    assert leases.holds(any_store, holder)
    leases.release(any_store, holder)
    assert leases.take(any_store, KEY, "second-run", lambda r: True, wait_s=1).run == "second-run"


def test_something_that_is_not_a_lease_is_never_taken_over(any_store):
    any_store.write_bytes(KEY, b"not json")
    with pytest.raises(ValueError, match="is not a lease"):
        leases.take(any_store, KEY, "a-run", lambda r: False, wait_s=1)
    assert any_store.read_bytes(KEY) == b"not json"


@pytest.mark.parametrize("raw", ["0", "inf", "2.5", "86401"])
def test_the_wait_setting_is_bounded(monkeypatch, raw):
    from geo_assets.limits import lease_wait_s

    monkeypatch.setenv("GEO_ASSETS_LEASE_WAIT_S", raw)
    with pytest.raises(ValueError, match=f"GEO_ASSETS_LEASE_WAIT_S='{raw}': must be a whole number from 1 to 86,400"):
        lease_wait_s()
