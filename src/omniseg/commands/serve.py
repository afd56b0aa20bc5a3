"""`omniseg serve`: the REST API and the web page on http://HOST:PORT/ (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse

from omniseg.commands import EXIT_OK
from omniseg.commands.backend_args import add_model_arguments
from omniseg.errors import MissingResourceError


def _positive(kind: type) -> object:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value

    return parse


def register(sub: argparse._SubParsersAction) -> None:
    from omniseg.server.limits import ServerLimits

    d = ServerLimits()
    sv = sub.add_parser("serve", help="serve the REST API (/v1/..., docs at /docs) and the web page (/)")
    sv.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)"
    )
    sv.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    add_model_arguments(sv, boxes=True)
    limit_flags = (  # flag, type, default, help
        ("--max-upload-mb", _positive(float), d.max_upload_bytes / 2**20, "largest request body in MB; more: 413"),
        ("--max-pixels", _positive(int), d.max_pixels, "largest image in pixels (width x height); more: 413"),
        ("--timeout", _positive(float), d.timeout_s, "seconds a request may take, queueing included; more: 504"),
        ("--concurrency", _positive(int), d.concurrency, "requests computed at once"),
        ("--queue", int, d.queue, "requests that may wait for a slot; one more: 503"),
    )
    for flag, kind, default, text in limit_flags:
        sv.add_argument(flag, type=kind, default=default, help=f"{text} (default: %(default)s)")
    sv.add_argument(
        "--body-timeout",
        type=_positive(float),
        default=d.body_timeout_s,
        help="seconds a client may take to send its whole request body; more: 408 (default: %(default)s)",
    )
    sv.add_argument(
        "--allowed-hosts",
        default=",".join(d.allowed_hosts),
        help="comma-separated Host header names answered, others get 400 (DNS rebinding); '*' answers any "
        "(default: %(default)s; add the name or address clients use when --host is not loopback)",
    )
    sv.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    sv.set_defaults(func=run)


def allowed_hosts(text: str, listen: str) -> tuple[str, ...]:
    """The --allowed-hosts names, plus the address the server listens on (it is a name clients use)."""
    from omniseg.errors import InputError

    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise InputError("--allowed-hosts is empty: give host names, or '*' for any")
    return names if "*" in names or listen in ("0.0.0.0", "::") else (*names, listen)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from omniseg.server.app import create_app, server_segmenter
        from omniseg.server.limits import ServerLimits
    except ImportError as exc:
        raise MissingResourceError(f"omniseg serve needs {exc.name}: pip install 'omniseg[serve]'") from exc
    from omniseg.errors import InputError

    if args.queue < 0:
        raise InputError("--queue must be 0 or more")
    limits = ServerLimits(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
        timeout_s=args.timeout,
        concurrency=args.concurrency,
        queue=args.queue,
        body_timeout_s=args.body_timeout,
        allowed_hosts=allowed_hosts(args.allowed_hosts, args.host),
    )
    # Loaded here, not in the app's startup, so a bad --model is one line and exit 2, before listening.
    segmenter = server_segmenter(
        args.model, args.max_size, args.masks, args.embed, args.runtime, args.device, boxes=args.boxes
    )
    app = create_app(segmenter, limits=limits)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.log_level == "debug")
    return EXIT_OK
