"""``omniseg serve``: the HTTP API (FastAPI) and the web page. Needs the ``serve`` extra
(fastapi, uvicorn, python-multipart): ``pip install 'omniseg[serve]'``.

``create_app`` is imported on first use, so ``omniseg.server.limits`` (standard library only) can be
read without FastAPI installed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServerLimits", "create_app", "shipped_vocabularies"]


def __getattr__(name: str) -> Any:
    if name == "ServerLimits":
        from omniseg.server.limits import ServerLimits

        return ServerLimits
    if name in ("create_app", "shipped_vocabularies"):
        from omniseg.server import app

        return getattr(app, name)
    raise AttributeError(name)
