"""Where the pilot runs, as the batch environment names it: site, computing element, host.

Cores, memory, disk and platform are measured by the built-in checks (the single source of
node facts); the batch system, its job id and the slot's end come from
``checks.builtin.batch_slot``, which the ``timeleft`` check asks too. Pure functions over an
environment mapping.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping


def ce_from_env(env: Mapping[str, str]) -> str:
    """The computing element the batch system names, if it names one.

    ARC sets ``GRID_GLOBAL_JOBID`` to a URL on its CE host; Slurm names its cluster in
    ``SLURM_CLUSTER_NAME``; PBS/Torque names its server in ``PBS_SERVER``.
    """
    global_id = env.get("GRID_GLOBAL_JOBID", "")
    if "://" in global_id:
        host = global_id.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
        if host:
            return host
    return env.get("SLURM_CLUSTER_NAME", "") or env.get("PBS_SERVER", "")


def site_from_env(env: Mapping[str, str]) -> str:
    """The site name the environment gives (WLCG's ``SITE_NAME``, glideinWMS' ``GLIDEIN_Site``)."""
    return env.get("SITE_NAME", "") or env.get("GLIDEIN_Site", "")


def hostname() -> str:
    return socket.getfqdn() or socket.gethostname()
