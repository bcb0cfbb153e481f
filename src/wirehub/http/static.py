"""Static files: content types, ETag/304, and no way out of the root folder."""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from urllib.parse import unquote

from wirehub.exceptions import ConfigError
from wirehub.http.messages import Request, Response

__all__ = ["StaticFiles"]

_MAX_FILE_SIZE = 16 * 1024 * 1024


class StaticFiles:
    """Serves the files below ``directory`` at URL ``prefix``.

    ``/`` and folder URLs serve ``index.html``. Files are read per request
    (small assets; the OS page cache does the caching) and validated with an
    ETag built from size and modification time.
    """

    def __init__(self, prefix: str, directory: str | os.PathLike[str]) -> None:
        self.prefix = "/" + prefix.strip("/")
        self.root = Path(directory).resolve()
        if not self.root.is_dir():
            raise ConfigError(f"static folder not found: {self.root}")

    def matches(self, path: str) -> bool:
        return self.prefix == "/" or path == self.prefix or path.startswith(self.prefix + "/")

    def resolve(self, path: str) -> Path | None:
        """The file a URL path names, or None if none (or outside the root)."""
        relative = unquote(path[len(self.prefix) :] if self.prefix != "/" else path).lstrip("/")
        if "\x00" in relative:
            return None
        target = (self.root / relative).resolve()
        if not target.is_relative_to(self.root):
            return None
        if target.is_dir():
            target = target / "index.html"
        return target if target.is_file() else None

    def respond(self, request: Request) -> Response | None:
        """The response for ``request``, or None when no file matches."""
        target = self.resolve(request.path)
        if target is None:
            return None
        if target.name == "index.html" and not request.path.endswith(("/", "index.html")):
            # A folder without its slash: redirect, or the page's relative links break.
            location = (
                request.path + "/" + (f"?{request.query_string}" if request.query_string else "")
            )
            return Response(301, b"", headers=[("Location", location)])
        return file_response(target, request)


def file_response(target: Path, request: Request) -> Response:
    """Serve one file with a content type and ETag; 304 when the client has it."""
    stat = target.stat()
    if stat.st_size > _MAX_FILE_SIZE:
        return Response.error(413, "file too large to serve")
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    headers = [("ETag", etag), ("Cache-Control", "no-cache")]
    if etag in request.headers.get("if-none-match", ""):
        return Response(304, b"", headers=headers)
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in ("application/javascript",):
        content_type += "; charset=utf-8"
    return Response(200, target.read_bytes(), content_type, headers)
