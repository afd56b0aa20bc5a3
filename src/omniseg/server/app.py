"""The HTTP API and the web page of ``omniseg serve``: ``create_app()`` builds the FastAPI app.

Every answer that is not a success is JSON ``{"error": "..."}``: 400 bad input, 404/405 unknown
route, 413 upload or image too large, 422 malformed form, 503 busy (queue full), 504 timeout, 500
a bug (logged here, never a traceback or a file-system path to the client). The model loads once
per process; uploads live in memory (or Starlette's spooled temporary files); the server writes
no file of its own (text embeddings are cached in memory).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from omniseg import __version__
from omniseg.cancel import Cancelled
from omniseg.errors import InputError, TooLargeError
from omniseg.images import decode_image
from omniseg.registry import DEFAULT_NAME
from omniseg.segmenter import Segmenter
from omniseg.server.answers import Format, display_json, mask_answer, png_response, segment_answer, with_warnings
from omniseg.server.door import server_segmenter, serving_door
from omniseg.server.guards import AllowedHosts, HeadAsGet
from omniseg.server.limits import (
    TICKET_KEY,
    AdmissionControl,
    BodySizeLimit,
    Gate,
    RequestTimeout,
    ServerBusy,
    ServerLimits,
)
from omniseg.server.vocabulary_store import VocabularyStore, shipped_vocabularies
from omniseg.tasks.common import load_mask
from omniseg.vocab import Vocabulary

log = logging.getLogger("omniseg.server")
STATIC_DIR = Path(__file__).parent / "static"
MAX_PHRASE_CHARS = 1000
MAX_NUMBER_LIST_CHARS = 10_000  # 100 points or boxes of long decimals fit


def parse_number_lists(text: str, width: tuple[int, ...], what: str) -> list[list[float]]:
    """'[[x, y, 1], [x, y, 0]]' -> lists of numbers, each of one of the allowed lengths."""
    example = "[[120, 80, 1]]" if 3 in width else "[[10, 20, 200, 160]]"
    if len(text) > MAX_NUMBER_LIST_CHARS:
        raise InputError(f"{what} is too long (at most {MAX_NUMBER_LIST_CHARS} characters), e.g. {example}")
    try:
        value = json.loads(text) if text.strip() else []
    except (ValueError, RecursionError):  # not JSON, nested past the parser's depth, an int of > 4300 digits
        raise InputError(f"{what} must be JSON, e.g. {example}") from None
    if not isinstance(value, list) or not all(isinstance(v, list) and len(v) in width for v in value):
        raise InputError(f"{what} must be a list of lists of {' or '.join(map(str, width))} numbers")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for v in value for x in v):
        raise InputError(f"{what} must hold numbers only")
    if len(value) > 100:
        raise InputError(f"at most 100 {what}")
    try:
        return [[float(x) for x in v] for v in value]
    except OverflowError:  # an integer too large for a float
        raise InputError(f"{what} must hold numbers of image-pixel size") from None


def create_app(
    segmenter: Segmenter | None = None,
    *,
    model: str | Path | None = None,
    limits: ServerLimits | None = None,
    vocabularies: Mapping[str, Path] | None = None,
    max_size: int = 512,
) -> FastAPI:
    """The app. ``segmenter``: use this one (tests); else the model in ``model`` (default: the
    embedded one) is loaded once, when the app starts. ``vocabularies``: name -> file, default the
    shipped ones (``shipped_vocabularies()``)."""
    limits = limits or ServerLimits()
    gate = Gate(limits.concurrency, limits.queue, limits.timeout_s)
    store = VocabularyStore(shipped_vocabularies() if vocabularies is None else vocabularies, limits.max_classes)
    state: dict[str, Segmenter] = {}
    model_name = DEFAULT_NAME if model is None else Path(model).name

    def install(base: Segmenter) -> None:
        state["segmenter"] = app.state.segmenter = serving_door(base)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if "segmenter" not in state:
            log.info("loading model %s", model_name)
            install(server_segmenter(model, max_size))
        yield
        gate.shutdown()

    app = _fastapi(
        title="omniseg",
        version=_version(),
        summary="Open-vocabulary image segmentation: words, clicks and examples.",
        lifespan=lifespan,
    )
    app.state.gate = gate
    app.state.limits = limits
    if segmenter is not None:
        install(segmenter)
    # inner: admitted only once the whole body has arrived (within its deadline) and its size is fine
    app.add_middleware(
        AdmissionControl, gate=gate, body_timeout_s=limits.body_timeout_s, max_uploads=limits.max_uploads
    )
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_upload_bytes)
    app.add_middleware(HeadAsGet)
    app.add_middleware(AllowedHosts, hosts=limits.allowed_hosts)  # outermost: a foreign Host gets nothing else
    _error_handlers(app)

    def seg() -> Segmenter:
        return state["segmenter"]

    def image_of(data: bytes, notes: list[str], what: str = "image") -> np.ndarray:
        return decode_image(data, max_pixels=limits.max_pixels, what=f"field {what!r}", notes=notes)

    def vocabulary_of(classes: str | None, vocab: str | None) -> Vocabulary:
        if (classes is None or not classes.strip()) == (vocab is None or not vocab.strip()):
            raise InputError("give exactly one of 'classes' (comma-separated names) or 'vocab' (a shipped name)")
        if vocab:
            return store.get(vocab.strip(), seg())
        assert classes is not None
        parsed = Vocabulary.from_string(classes)
        if len(parsed) > limits.max_classes:
            raise InputError(f"{len(parsed)} classes, over this server's limit of {limits.max_classes}")
        return parsed

    async def run(request: Request, job: Callable[[list[str]], Any]) -> Any:
        """Run job(notes) under the admission gate; what it noted (e.g. only the first frame of an
        animated upload was used) reaches the client: a "warnings" list in JSON answers, an
        X-Omniseg-Warning header on PNG ones."""
        notes: list[str] = []
        answer = await gate.run(lambda: job(notes), ticket=getattr(request.state, TICKET_KEY, None))
        return with_warnings(answer, notes)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", summary="Liveness and load")
    async def healthz() -> dict:
        return {
            "status": "ok",
            "model": seg().model_id,
            "in_flight": gate.admitted,
            "rejected": gate.rejected,
            "limits": {k: getattr(limits, k) for k in limits.__dataclass_fields__},
        }

    @app.get("/v1/vocabularies", summary="The shipped vocabularies this server accepts by name")
    async def list_vocabularies() -> dict:
        return {"vocabularies": await asyncio.to_thread(store.listing)}

    @app.post("/v1/segment", summary="Semantic, instance or panoptic segmentation with the given classes")
    async def segment(
        request: Request,
        image: UploadFile = File(..., description="the image (PNG, JPEG, WebP, ...)"),
        classes: str | None = Form(None, description="comma-separated class names, e.g. 'sky,road,red car'"),
        vocab: str | None = Form(None, description="a shipped vocabulary name (GET /v1/vocabularies)"),
        task: Literal["semantic", "instance", "panoptic"] = Form("semantic"),
        threshold: float | None = Form(
            None,
            description="minimum confidence 0..1 of an answer (semantic: unlabeled below it, default 0.1; "
            "instance/panoptic: min object score, default 0.2)",
        ),
        stuff: str | None = Form(None, description="comma-separated classes that are stuff"),
        rle: bool = Form(False, description="add COCO RLE masks (per class / instance / segment)"),
        display: bool = Form(False, description="add the index map the web page draws (base64)"),
        format: Format = Query(
            "json",
            description="json, or png: the label map (semantic), instance index "
            "map (instance, 255/65535 = none) or COCO panoptic PNG (panoptic)",
        ),
    ) -> Any:
        data = await image.read()

        def job(notes: list[str]) -> Any:
            array = image_of(data, notes)
            vocabulary = vocabulary_of(classes, vocab)
            result = seg().segment(array, classes=vocabulary, task=task, threshold=threshold, stuff=stuff or None)
            return segment_answer(result, task, format, rle, display)

        return await run(request, job)

    @app.post("/v1/refer", summary="The region a phrase refers to ('the dog on the left')")
    async def refer(
        request: Request,
        image: UploadFile = File(...),
        phrase: str = Form(..., description="what to find, in words"),
        display: bool = Form(False),
        format: Format = Query("json", description="json, or png: the mask (0 / 255)"),
    ) -> Any:
        data = await image.read()
        if not phrase.strip() or len(phrase) > MAX_PHRASE_CHARS:
            raise InputError(f"phrase must have 1 to {MAX_PHRASE_CHARS} characters")

        def job(notes: list[str]) -> Any:
            result = seg().refer(image_of(data, notes), phrase)
            return mask_answer(result, phrase.strip(), format, display)

        return await run(request, job)

    @app.post("/v1/click", summary="The object under positive/negative points or in a box")
    async def click(
        request: Request,
        image: UploadFile = File(...),
        points: str = Form("[]", description="JSON [[x, y, 1 (on it) or 0 (not on it)], ...] in image pixels"),
        boxes: str = Form("[]", description="JSON [[x0, y0, x1, y1], ...] in image pixels"),
        classes: str | None = Form(None, description="optional comma-separated names to name the object with"),
        display: bool = Form(False),
        format: Format = Query("json", description="json, or png: the mask (0 / 255)"),
    ) -> Any:
        data = await image.read()
        pts = [(p[0], p[1], bool(p[2]) if len(p) == 3 else True) for p in parse_number_lists(points, (2, 3), "points")]
        bxs = [(b[0], b[1], b[2], b[3]) for b in parse_number_lists(boxes, (4,), "boxes")]

        def job(notes: list[str]) -> Any:
            names = vocabulary_of(classes, None) if classes and classes.strip() else None
            result = seg().click(image_of(data, notes), points=pts, boxes=bxs, classes=names)
            return mask_answer(result, result.label or "object", format, display)

        return await run(request, job)

    @app.post("/v1/incontext", summary="Segment in the target what the example masks mark")
    async def incontext(
        request: Request,
        example: list[UploadFile] = File(..., description="example image(s)"),
        example_mask: list[UploadFile] = File(
            ..., description="id mask PNG per example (single channel, 0 = background), at the example's size"
        ),
        target: UploadFile = File(..., description="the image to segment"),
        level: Literal["category", "instance"] = Form("category"),
        display: bool = Form(False),
        format: Format = Query("json", description="json, or png: the id map (the examples' ids, 0 = background)"),
    ) -> Any:
        if len(example) != len(example_mask):
            raise InputError(f"{len(example)} example images but {len(example_mask)} example masks")
        if len(example) > 8:
            raise InputError("at most 8 examples")
        pairs = [(await e.read(), await m.read()) for e, m in zip(example, example_mask, strict=True)]
        target_data = await target.read()

        def job(notes: list[str]) -> Any:
            examples = [
                (image_of(e, notes, f"example #{n}"), load_mask(m, f"field 'example_mask' #{n}", notes))
                for n, (e, m) in enumerate(pairs, start=1)
            ]
            result = seg().incontext(examples, image_of(target_data, notes, "target"), level=level)[0]
            id_map = result.id_map
            if format == "png":
                return png_response(id_map)
            answer: dict[str, Any] = result.to_json()
            if display:
                names = [f"id {i}" for i in range(int(id_map.max()) + 1)]
                answer["display"] = display_json(id_map, names, 0)
            return answer

        return await run(request, job)

    return app


def _fastapi(**kwargs: Any) -> FastAPI:
    """FastAPI whose /docs page is served from local files (fastapi-offline), so the docs work
    without internet; plain FastAPI (docs assets from a CDN) when that package is missing."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        return FastAPI(**kwargs)
    return FastAPIOffline(**kwargs)


def _version() -> str:
    return __version__


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TooLargeError)
    async def too_large(_: Request, exc: TooLargeError) -> JSONResponse:
        return _error(413, str(exc))

    @app.exception_handler(InputError)
    async def bad_input(_: Request, exc: InputError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(ServerBusy)
    async def busy(_: Request, exc: ServerBusy) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": "1"})

    @app.exception_handler(Cancelled)
    async def cancelled(_: Request, exc: Cancelled) -> JSONResponse:  # the client is gone; keep it to one line
        return _error(504, f"request cancelled ({exc})")

    @app.exception_handler(RequestTimeout)
    async def timeout(_: Request, exc: RequestTimeout) -> JSONResponse:
        return _error(504, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(500, f"internal error ({exc.__class__.__name__})")
