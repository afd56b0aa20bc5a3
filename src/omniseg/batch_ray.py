"""The batch job on Ray Data (``pip install 'omniseg[ray]'``): a runner for omniseg.batch.run_batch.

Image paths go through ``map_batches`` to actors that each load the model once (omniseg.batch.Worker)
and return every output file as bytes; the driver writes them (atomically, marker last) exactly as
the local batch does, so the two produce the same bytes. Workers read the images by path: on a
cluster of several machines the inputs must be on storage every node sees (the outputs need not be,
only the driver writes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

from omniseg.batch import BatchItem, BatchJob, Outcome, Worker
from omniseg.errors import MissingResourceError


class _RayWorker:
    """A Ray actor: one Worker (model loaded once) over batches of {key, path} rows."""

    def __init__(self, job: BatchJob, threads: int) -> None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        self.worker = Worker(job, threads)

    def __call__(self, batch: dict) -> dict:
        rows: dict[str, list] = {k: [] for k in ("key", "name", "data", "count", "error", "summary", "seconds")}

        def add(outcome: Outcome, name: str, data: bytes) -> None:
            rows["key"].append(outcome.key)
            rows["name"].append(name)
            rows["data"].append(data)
            rows["count"].append(len(outcome.files))
            rows["error"].append(outcome.error or "")
            rows["summary"].append(outcome.summary)
            rows["seconds"].append(outcome.seconds)

        for key, path in zip(batch["key"], batch["path"], strict=True):
            outcome = self.worker.run(str(key), str(path))
            for name, data in outcome.files.items():
                add(outcome, name, data)
            if not outcome.files:  # an error: one row says so
                add(outcome, "", b"")
        return rows


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise MissingResourceError(
            "--ray needs Ray Data: pip install 'omniseg[ray]' (or pip install 'ray[data]')"
        ) from exc
    return ray


def run_ray(
    items: Sequence[BatchItem],
    job: BatchJob,
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
) -> Iterator[tuple[BatchItem, Outcome]]:
    """Outcomes of ``items`` computed by ``workers`` Ray actors (default: one per CPU of the cluster).

    address: None starts a private local Ray instance (stopped at the end); 'auto' or 'HOST:PORT'
    joins a running cluster."""
    if not items:
        return
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        options = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
        if address is None:
            cpus = workers * threads if workers else len(os.sched_getaffinity(0))
            # A small object store: rows are a few output files, never the dataset.
            ray.init(num_cpus=cpus, object_store_memory=256 * 1024**2, **options)
        else:
            ray.init(address=address, **options)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # run_batch shows one bar for the whole job
        ctx.print_on_execution_start = False
        actors = workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        by_key = {item.key: item for item in items}
        ds = ray.data.from_items(
            [{"key": item.key, "path": str(item.path)} for item in items],
            override_num_blocks=min(len(items), actors * 4),
        )
        ds = ds.map_batches(
            _RayWorker,
            fn_constructor_kwargs={"job": job, "threads": threads},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(actors, len(items))),
            num_cpus=threads,
        )
        partial: dict[str, Outcome] = {}
        for row in ds.iter_rows():
            key = str(row["key"])
            outcome = partial.setdefault(key, Outcome(key, summary=str(row["summary"]), seconds=float(row["seconds"])))
            if row["error"]:
                outcome.error = str(row["error"])
            else:
                outcome.files[str(row["name"])] = bytes(row["data"])
            if outcome.error is not None or len(outcome.files) == int(row["count"]):
                yield by_key[key], partial.pop(key)
        if partial:
            raise RuntimeError(f"Ray returned incomplete outputs for {len(partial)} images")
    finally:
        if started:
            ray.shutdown()
