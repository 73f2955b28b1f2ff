"""Joining or starting the Ray cluster a job runs on.

A cluster the job starts itself is private to this machine: every Ray service (GCS, raylet,
object manager, workers, dashboard and its agents, metrics) listens on loopback only. Joining a
real cluster (``"auto"``, an address, or ``RAY_ADDRESS`` as set inside ``ray job submit``) is
left to Ray unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import ray
from ray._private import ray_constants

# Ray (2.60) binds its gRPC servers to every interface unless the node IP is loopback, and it
# replaces a requested 127.0.0.1 by the routable address unless it believes multi-node clusters
# are off (its macOS/Windows default). This switch, read by the driver and inherited by every
# process the new node spawns, is the one supported way to get a loopback-only node.
_LOOPBACK_ONLY_ENV = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def connect(cluster: str | None, **init_kwargs: Any) -> None:
    """Join a Ray cluster unless this process already has one.

    Parameters
    ----------
    cluster : ``"auto"`` (the running cluster), an address (``"ray://..."``, ``"host:port"``),
        or ``"local"`` / None: the cluster named by ``RAY_ADDRESS`` when set (as inside
        ``ray job submit``), else a new loopback-only cluster on this machine.
    **init_kwargs : passed to ``ray.init`` (e.g. ``num_cpus``, ``include_dashboard``).
    """
    if ray.is_initialized():
        return
    if cluster not in (None, "local"):
        ray.init(address=cluster, **init_kwargs)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(**init_kwargs)
    else:
        start_local_cluster(**init_kwargs)


def start_local_cluster(**init_kwargs: Any) -> None:
    """Start a new single-machine Ray cluster whose services listen on loopback only."""
    saved_env = os.environ.get(_LOOPBACK_ONLY_ENV)
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOOPBACK_ONLY_ENV] = "0"  # the raylet, workers and agents inherit it
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process read the variable at import
    try:
        ray.init(address="local", **init_kwargs)
    finally:
        # Restore both, so a later connection of this process to a real cluster is unchanged;
        # the started node keeps its own copy of the environment.
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_LOOPBACK_ONLY_ENV, None)
        else:
            os.environ[_LOOPBACK_ONLY_ENV] = saved_env
