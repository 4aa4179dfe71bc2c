"""devtools.dagster_dev.stop_group, which ends every `dagster dev`, daemon and webserver the tests start:
the leader is signalled alone first (it stops its own services, clients before servers), and nothing
of its group outlives the stop."""

import subprocess
import sys
import time
from pathlib import Path

from devtools.dagster_dev import _live_members, stop_group

# A service that notes a SIGTERM and goes on running (as a code server in gRPC's grace does).
SERVICE = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: open(sys.argv[1], "w").write("signalled"))
print("serving", flush=True)
while True:
    time.sleep(0.1)
"""
# A leader that, on SIGTERM, reports whether its service had been signalled too, then exits without it.
LEADER = """
import signal, subprocess, sys, time
service = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
assert service.stdout.readline().strip() == "serving"
def stop(*_):
    time.sleep(0.5)  # time for a signal sent to the whole group to reach the service too
    print("service signalled with the leader:", __import__("os").path.exists(sys.argv[2]), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print(service.pid, flush=True)
while True:
    time.sleep(0.1)
"""


def test_the_leader_is_stopped_alone_first_and_nothing_of_its_group_outlives_it(tmp_path: Path):
    mark = tmp_path / "service-signalled"
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER, SERVICE, str(mark)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    service = int(leader.stdout.readline())
    assert set(_live_members(leader.pid)) == {leader.pid, service}

    started = time.monotonic()
    stop_group(leader, grace=30, linger=2)
    took = time.monotonic() - started

    assert leader.stdout.read().strip() == "service signalled with the leader: False"
    assert leader.returncode == 0  # it ended on its own, from the SIGTERM
    assert _live_members(leader.pid) == []  # the service that ignored its SIGTERM was killed
    assert took < 10, f"the stop took {took:.1f} s"
