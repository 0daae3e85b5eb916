"""A local dask.distributed cluster (separate worker processes) for one command.

    python -m pipelines.dask_local --workers 2 -- revattr run --executor beam \\
        --runner DaskRunner ... -- --dask_client_address={address}

Starts ``LocalCluster(n_workers=N, processes=True)``, runs the command with ``{address}``
replaced by the scheduler's address, stops the cluster and exits with the command's
status (``make run-dask``). On a real cluster, pass its scheduler address instead
(docs/deploy.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.dask_local",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the command, after --; {address} is replaced")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    from distributed import LocalCluster

    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        print(f"dask cluster: {args.workers} worker processes at {address}", flush=True)
        return subprocess.call([part.replace("{address}", address) for part in command])


if __name__ == "__main__":
    sys.exit(main())
