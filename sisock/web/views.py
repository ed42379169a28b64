"""Saved dashboard views, kept by the web bridge under ``$SISOCK_HOME/views``.

A view is what the dashboard's URL holds, with a name::

    {"name": "cryostat week",
     "panels": [["webarch:stage_temp", "webarch:plate_temp"], ["webarch:cryo_state"]],
     "range": "7d",                 # a preset, or null with "from"/"to" (UNIX seconds)
     "from": null, "to": null,
     "live": true,
     "saved_at": 1796000000.0}       # set by the bridge

Every caller of the bridge sees every saved view (a team shares dashboards
without passing URLs around); ``GET /api/views/{name}`` is also the export
format, and ``POST /api/views`` imports one. One JSON file per view, written
atomically (temporary file, then rename).

Routes: ``GET /api/views`` (list), ``POST /api/views`` (save or replace),
``GET /api/views/{name}``, ``DELETE /api/views/{name}``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import WebError, bad

#: Presets the dashboard knows (``range``).
PRESETS = ("15m", "1h", "1d", "7d", "30d", "1y", "all")
#: Limits on one view.
MAX_NAME = 80
MAX_PANELS = 50
MAX_FIELDS = 50
MAX_VIEWS = 1000
_NAME = re.compile(r"^[^\x00-\x1f/\\]{1,%d}$" % MAX_NAME)
_FIELD = re.compile(r"^[^:,|\s]{1,200}:[^,|\s]{1,200}$")


def check_name(name: Any) -> str:
    """A view's name: 1 to :data:`MAX_NAME` characters, no slash or control character.

    Raises
    ------
    WebError
        ``bad_argument`` naming the rule broken.
    """
    if not isinstance(name, str) or not _NAME.match(name) or name.strip() != name or name in (".", ".."):
        raise bad(
            f"a view's 'name' must be 1 to {MAX_NAME} characters without '/', '\\', "
            f"control characters or surrounding spaces; got {name!r}"
        )
    return name


def check_view(doc: Any) -> dict:
    """A saved view's document, checked and normalised (unknown members dropped).

    Parameters
    ----------
    doc : Any
        The JSON body sent by a caller.

    Returns
    -------
    dict
        ``{"name", "panels", "range", "from", "to", "live"}``.
    """
    if not isinstance(doc, dict):
        raise bad("a view must be a JSON object with 'name' and 'panels'")
    name = check_name(doc.get("name"))
    panels = doc.get("panels")
    if (
        not isinstance(panels, list)
        or len(panels) > MAX_PANELS
        or not all(isinstance(p, list) and len(p) <= MAX_FIELDS for p in panels)
    ):
        raise bad(
            f"a view's 'panels' must be a list (at most {MAX_PANELS}) of lists "
            f"(at most {MAX_FIELDS} each) of 'node:field' strings"
        )
    for p in panels:
        for f in p:
            if not isinstance(f, str) or not _FIELD.match(f):
                raise bad(f"a view's panels hold 'node:field' strings; got {f!r}")
    rng = doc.get("range")
    start, end = doc.get("from"), doc.get("to")
    if rng is None:
        ok = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (start, end))
        if not ok or not (0 < start < end):
            raise bad("a view without a preset 'range' needs numbers 'from' < 'to' (UNIX seconds)")
        start, end = float(start), float(end)
    elif rng not in PRESETS:
        raise bad(f"a view's 'range' must be one of {', '.join(PRESETS)} or null; got {rng!r}")
    else:
        start = end = None
    live = doc.get("live", True)
    if not isinstance(live, bool):
        raise bad(f"a view's 'live' must be true or false; got {live!r}")
    return {"name": name, "panels": [list(p) for p in panels], "range": rng, "from": start, "to": end, "live": live}


class ViewStore:
    """Saved views as JSON files in one directory.

    Parameters
    ----------
    directory : Path
        Where the files live (created on the first save).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        #: Requests run in worker threads: one at a time (the count limit and the
        #: temporary file name assume it).
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path:
        return self.directory / (quote(check_name(name), safe=" -_.()") + ".json")

    def list(self) -> list[dict]:
        """``[{"name", "panels", "saved_at"}, ...]`` (panels: how many), by name."""
        out = []
        if not self.directory.is_dir():
            return out
        for path in self.directory.glob("*.json"):
            try:
                doc = json.loads(path.read_text())
                out.append({"name": doc["name"], "panels": len(doc["panels"]), "saved_at": doc.get("saved_at")})
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a damaged or foreign file is skipped, not fatal
        return sorted(out, key=lambda d: d["name"].lower())

    def get(self, name: str) -> dict:
        """The view called ``name`` (``not_found`` if there is none)."""
        path = self._path(name)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise WebError("not_found", f"no saved view named {name!r} (see /api/views)") from None

    def save(self, doc: Any) -> dict:
        """Check and store ``doc`` (replacing a view of the same name); return it."""
        view = check_view(doc)
        path = self._path(view["name"])
        if not path.exists() and len(self.list()) >= MAX_VIEWS:
            raise bad(f"there are already {MAX_VIEWS} saved views: delete some first")
        view["saved_at"] = time.time()
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(view, indent=1))
        os.replace(tmp, path)
        return view

    def delete(self, name: str) -> None:
        """Remove the view called ``name`` (``not_found`` if there is none)."""
        try:
            self._path(name).unlink()
        except FileNotFoundError:
            raise WebError("not_found", f"no saved view named {name!r} (see /api/views)") from None

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """Answer one request under ``/api/views``: ``(status, JSON document)``.

        Parameters
        ----------
        method : str
            ``GET``, ``POST`` or ``DELETE``.
        path : str
            The decoded path (``/api/views`` or ``/api/views/{name}``).
        body : Any
            The parsed JSON body (``POST``).
        """
        with self._lock:
            return self._handle(method, path, body)

    def _handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        rest = path.rstrip("/")[len("/api/views") :].lstrip("/")
        if not rest:
            if method == "GET":
                return 200, self.list()
            if method == "POST":
                return 200, self.save(body)
        else:
            name = rest  # the HTTP shell decoded the path already
            if method == "GET":
                return 200, self.get(name)
            if method == "DELETE":
                self.delete(name)
                return 200, {"deleted": name}
        allowed = "GET, POST" if not rest else "GET, DELETE"
        raise WebError("method_not_allowed", f"{path} accepts {allowed}, not {method}")
