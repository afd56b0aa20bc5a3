"""`omniseg batch`: the `segment` job over many images, locally (processes) or on Ray Data (--ray).

Both write the same bytes; resume (--skip-existing/--resume) works the same whichever ran before.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omniseg.commands.segment import add_job_arguments, run_job
from omniseg.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    batch = sub.add_parser(
        "batch",
        help="segment many images (directories, globs) locally or on a Ray cluster",
        description="The `segment` job over files, directories (recursive) and globs. Without --ray: local "
        "processes (--workers). With --ray: Ray Data actors, each loading the model once; the driver writes "
        "every file, so outputs equal the local run's byte for byte.",
    )
    add_job_arguments(batch)
    batch.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run on Ray Data: alone (or 'local'), a private local Ray instance; or the address of a running cluster "
        "('auto', 'HOST:PORT'; its nodes must see the input paths). Needs: pip install 'omniseg[ray]'",
    )
    batch.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    address = None if args.ray in (None, "local") else args.ray
    if address is not None and (Path(address).exists() or "*" in address):
        raise InputError(f"--ray took {address!r} as a cluster address: put --ray after the images, or --ray=local")
    return run_job(args)
