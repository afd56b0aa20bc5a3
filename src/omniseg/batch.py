"""Batch segmentation: many images (files, directories walked recursively, globs) -> an output tree.

One job = (vocabulary with its embeddings, task, threshold, model, max size). Every image has a
*key*, its path relative to the input it came from without the extension ('a/x' for DIR/a/x.jpg),
and its files are written under OUT/<key>... so a/x.jpg and b/x.jpg never collide.

Workers (local processes, or Ray actors in omniseg.batch_ray) only compute: they return each
image's files as bytes. One writer, the driver, commits them: every file atomically (temp file +
rename), then a completion marker OUT/.omniseg/done/<key>.json last. A rerun with ``resume`` skips
an image only if its marker matches this job and all its files exist, so an image cut off by a
kill is simply done again; outputs are a deterministic function of (image, job), so a killed and
resumed run ends with the same bytes as an uninterrupted one, whatever the number of workers (for a
fixed number of torch threads per worker: more threads round floats differently).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from omniseg import __version__, registry
from omniseg.atomic import atomic_write_bytes, atomic_write_text, remove_stale_temp_files
from omniseg.data.folder import IMAGE_EXTENSIONS, ImageFolder, image_files, relative_id
from omniseg.errors import InputError, OutputError
from omniseg.fswalk import glob_base, glob_matches
from omniseg.orphan import exit_with_parent
from omniseg.results import InstanceResult, SemanticResult
from omniseg.segmenter import Segmenter, Task
from omniseg.vocab import Vocabulary

MARKER_DIR = Path(".omniseg") / "done"


@dataclass(frozen=True)
class BatchItem:
    path: Path
    key: str  # relative output stem, '/'-separated


def _key(path: Path, base: Path | None) -> str:
    return relative_id(path, base if base is not None else path.parent)


def collect_images(inputs: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None) -> list[BatchItem]:
    """Files (key = file stem), directories (read as ``omniseg.data.folder.ImageFolder``: recursive;
    key = the sample id, the path below the directory) and globs (key = path below the glob's fixed
    prefix; a matched directory walked by the same reader). ``exclude``: a directory never walked
    (the output). Raises InputError for a missing input, an input without images, or two images
    with one key."""
    excluded = Path(exclude).resolve() if exclude is not None else None
    items: list[BatchItem] = []
    missing: list[str] = []
    for raw in inputs:
        text = os.fspath(raw)
        path = Path(text)
        if path.is_file():
            items.append(BatchItem(path, _key(path, None)))
        elif path.is_dir():
            items.extend(BatchItem(sample.image_path, sample.id) for sample in ImageFolder(path, excluded).samples)
        elif glob.has_magic(text):
            base = glob_base(text)
            found: list[BatchItem] = []
            for m, is_dir in glob_matches(text, excluded):  # loop-safe, unlike glob('**')
                if is_dir:
                    found.extend(BatchItem(p, _key(p, base)) for p in image_files(m, excluded))
                elif m.suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(BatchItem(m, _key(m, base)))
            if not found:
                raise InputError(f"no images match {text}")
            items.extend(found)
        elif path.exists():  # a FIFO, a device (/dev/zero), a socket: reading it would block or never end
            raise InputError(f"image is not a regular file: {path}")
        else:
            missing.append(text)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"image not found: {missing[0]}{more}")
    seen: dict[str, Path] = {}
    unique: list[BatchItem] = []
    for item in items:
        if item.key in seen:
            if seen[item.key].resolve() == item.path.resolve():
                continue  # the same file named twice (e.g. by a glob and a directory)
            raise InputError(
                f"{seen[item.key]} and {item.path} would both write the outputs {item.key}.* "
                "(give their common directory instead, sub-paths are kept; or rename one)"
            )
        seen[item.key] = item.path
        unique.append(item)
    return unique


@dataclass
class BatchJob:
    """What every worker needs to segment any image: picklable, nothing loaded."""

    vocab: Vocabulary  # with embeddings (computed once by the driver, so every worker uses the same)
    task: Task = "semantic"
    threshold: float | None = None
    model: str | None = None
    max_size: int = 512
    masks: str | None = None  # source specs (omniseg.registry), None = the native model
    embed: str | None = None
    runtime: Literal["torch", "onnx"] = "torch"
    device: str = "cpu"  # where every worker runs the model (floats may round differently elsewhere)
    boxes: str | None = None  # Grounded-SAM's box detector (with ``masks``), None = none

    def fingerprint(self) -> str:
        """Changes whenever the outputs could: a marker from another job does not count as done."""

        h = hashlib.sha256()
        h.update(
            json.dumps(
                [
                    __version__,
                    self.task,
                    self.threshold,
                    self.model,
                    self.max_size,
                    self.masks,
                    self.embed,
                    self.runtime,
                    self.device,
                    self.vocab.synonyms,
                    list(self.vocab.templates),
                    self.vocab.stuff,
                    *([self.boxes] if self.boxes else []),  # a job without boxes keeps its fingerprint
                ]  # fmt: skip
            ).encode()
        )
        if self.vocab.embeddings is not None:  # a concept source (SAM 3) reads the names, not embeddings
            h.update(np.ascontiguousarray(self.vocab.embeddings).tobytes())
        if self.model is not None and Path(self.model).is_dir():
            for weights in sorted(Path(self.model).glob("*")):
                if weights.is_file():
                    h.update(f"{weights.name}:{weights.stat().st_size}:{weights.stat().st_mtime_ns}".encode())
        return h.hexdigest()[:32]


@dataclass
class Outcome:
    key: str
    files: dict[str, bytes] = field(default_factory=dict)  # path relative to OUT -> bytes
    summary: str = ""
    seconds: float = 0.0
    error: str | None = None


class Worker:
    """Loads the job's source once (or uses ``segmenter``); turns an image file into its output files (as bytes).

    The vocabulary comes embedded from the driver, so a worker never loads the text encoder (the
    door loads it on first use only).
    """

    def __init__(self, job: BatchJob, threads: int | None = None, segmenter: Segmenter | None = None) -> None:
        if threads is not None:
            torch.set_num_threads(max(1, threads))
        self.job = job
        # The vocabulary comes embedded by the driver; the door's text encoder (loaded on first use) serves
        # what the model needs besides (backend labels, the frozen recognizer's seen names and known concepts).
        self.segmenter = segmenter or registry.load_specs(job)

    def run(self, key: str, image: str | os.PathLike) -> Outcome:
        try:
            result = self.segmenter.segment(
                image,
                classes=self.job.vocab,
                threshold=self.job.threshold,
                task=self.job.task,
            )
        except InputError as exc:
            return Outcome(key, error=str(exc))
        rel = Path(key)
        files = {}
        with tempfile.TemporaryDirectory(prefix="omniseg-batch-") as tmp:
            # The result's own writers, so batch files are exactly what `segment` writes for one image.
            try:
                for path in result.save(tmp, rel.name).values():
                    files[(rel.parent / path.name).as_posix()] = path.read_bytes()
            except (InputError, OutputError) as exc:  # this image only; never show the internal temp path
                return Outcome(key, error=f"{image}: its outputs cannot be made: {str(exc).replace(tmp, '<out>')}")
        return Outcome(key, files, summary(result), result.timings["total_s"])


def summary(result) -> str:
    """One line per image: the largest classes (semantic) or the best objects/segments."""
    if isinstance(result, SemanticResult):
        top = sorted(result.fractions().items(), key=lambda kv: -kv[1])[:5]
        return ", ".join(f"{k} {v:.0%}" for k, v in top)
    items = result.instances if isinstance(result, InstanceResult) else result.segments
    best = ", ".join(f"{result.classes[i.label]} {i.score:.2f}" for i in items[:5])
    noun = "instances" if isinstance(result, InstanceResult) else "segments"
    return f"{len(items)} {noun}" + (f": {best}" if best else "")


def _marker(out: Path, key: str) -> Path:
    return out / MARKER_DIR / f"{key}.json"


def is_done(out: Path, item: BatchItem, fingerprint: str) -> bool:
    marker = _marker(out, item.key)
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if record.get("job") != fingerprint or record.get("image") != _image_signature(item.path):
        return False
    return all((out / name).is_file() for name in record.get("files", []))


def _image_signature(path: Path) -> list:
    """Size and mtime: a changed input is done again (not its path: the key already places it, and the
    same folder may be named differently from another working directory)."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def commit(out: Path, item: BatchItem, outcome: Outcome, fingerprint: str) -> None:
    """Every file atomically, then the marker: a kill at any point leaves the image not done."""
    _marker(out, item.key).unlink(missing_ok=True)
    for name, data in outcome.files.items():
        atomic_write_bytes(out / name, data)
    record = {"job": fingerprint, "image": _image_signature(item.path), "files": sorted(outcome.files)}
    atomic_write_text(_marker(out, item.key), json.dumps(record))


# A worker process's own Worker, built once by the pool initializer.
_PROCESS_WORKER: Worker | None = None


def _init_process(job: BatchJob, threads: int, parent_pid: int | None = None) -> None:
    global _PROCESS_WORKER
    if parent_pid is not None:
        exit_with_parent(parent_pid)  # before the model loads: a driver killed meanwhile leaves no orphan
    os.environ["OMP_NUM_THREADS"] = str(threads)
    _PROCESS_WORKER = Worker(job, threads)


def _run_in_process(key: str, path: str) -> Outcome:
    assert _PROCESS_WORKER is not None
    return _PROCESS_WORKER.run(key, path)


def run_local(
    items: Sequence[BatchItem],
    job: BatchJob,
    workers: int = 1,
    threads: int | None = None,
    segmenter: Segmenter | None = None,
) -> Iterator[tuple[BatchItem, Outcome]]:
    """Outcomes as they finish (in input order with one worker). workers > 1: that many processes
    (spawned, each loading the job's source once). threads: torch threads per worker (None: torch's
    default, one per core). Outputs depend on it in the last float bits (scores in the 6th decimal, now
    and then a pixel), never on ``workers``: keep it fixed (the CLI's default is 1) for byte-identical
    reruns. ``segmenter``: run in this process on this door (any source object; one worker only)."""
    if not items:
        return
    if segmenter is not None and workers > 1:
        raise InputError("a segmenter object runs in this process only: use workers=1, or specs in the job")
    if workers <= 1:
        worker = Worker(job, threads, segmenter)
        for item in items:
            yield item, worker.run(item.key, item.path)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = threads or 1
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(items)),
        mp_context=context,
        initializer=_init_process,
        initargs=(job, threads, os.getpid()),
    ) as pool:
        futures = {pool.submit(_run_in_process, item.key, str(item.path)): item for item in items}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


@dataclass
class BatchStats:
    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else float("nan")


def run_batch(
    items: Sequence[BatchItem],
    job: BatchJob,
    out: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    runner: Callable[[Sequence[BatchItem], BatchJob], Iterable[tuple[BatchItem, Outcome]]] | None = None,
    on_outcome: Callable[[BatchItem, Outcome], None] | None = None,
) -> BatchStats:
    """Segment ``items`` into ``out``; ``runner`` computes the outcomes (default: run_local, one
    process), this function alone writes. With ``resume``, finished images are skipped."""
    from tqdm import tqdm

    out = Path(out)
    remove_stale_temp_files(out)
    fingerprint = job.fingerprint()
    pending = [item for item in items if not (resume and is_done(out, item, fingerprint))]
    stats = BatchStats(total=len(items), skipped=len(items) - len(pending))
    start = time.perf_counter()
    bar = tqdm(
        total=len(items),
        initial=stats.skipped,
        desc="segment",
        unit="img",
        disable=not progress or len(items) < 2,
        dynamic_ncols=True,
    )
    with bar:
        for item, outcome in (runner or run_local)(pending, job):
            if outcome.error is not None:
                stats.failed += 1
                stats.errors.append(outcome.error)
            else:
                commit(out, item, outcome, fingerprint)
                stats.done += 1
            if on_outcome is not None:
                on_outcome(item, outcome)
            bar.update(1)
    stats.seconds = time.perf_counter() - start
    return stats
