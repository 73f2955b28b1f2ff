"""A cluster the job starts itself listens on loopback only (checked on the live sockets)."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ebsdray.distributed.cluster import LOOPBACK_HOSTS

# A fresh process: the shared test cluster is already running in this one.
_START_AND_LIST = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {tests!r})
    import ray
    from listening import listening_addresses
    from ebsdray.distributed.cluster import connect

    connect("local", num_cpus=1)

    @ray.remote
    class Echo:
        def pid(self):
            return os.getpid()

    echo = Echo.remote()
    ray.get(echo.pid.remote())
    @ray.remote
    def task_pid():
        return os.getpid()

    ray.get(task_pid.remote())
    print(json.dumps(listening_addresses(os.getpid())))
    print(json.dumps(os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")))
    ray.shutdown()
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_local_cluster_listens_on_loopback_only(tmp_path):
    tests = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", _START_AND_LIST.format(tests=tests)],
        capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    sockets, env_after = json.loads(lines[-2]), json.loads(lines[-1])
    names = {n for owners in sockets.values() for n in owners}
    # The cluster's own services, started by this job, are the ones listed.
    assert {"gcs_server", "raylet"} <= names, sockets
    exposed = {a: o for a, o in sockets.items() if a.rsplit(":", 1)[0] not in LOOPBACK_HOSTS}
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert env_after is None  # the driver's environment is restored for later connections
