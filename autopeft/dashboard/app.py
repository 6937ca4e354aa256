"""The dashboard's web application (Starlette): pages, their JSON, and static files.

Pages are Jinja2 templates with autoescaping on, so a study named
`<script>alert(1)</script>` shows as text; the tables that update live are filled by
dashboard.js with textContent, never innerHTML, for the same reason. Plots are drawn in
the browser by the plotly.min.js that ships inside the `plotly` wheel: nothing is
fetched from the internet. Unknown studies and trials get a 404 page; any other error a
500 page without a traceback (the traceback goes to the log).
"""
from __future__ import annotations

import contextlib
import logging
import math
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

import autopeft.dashboard.ranking as ranking
from autopeft.dashboard.data import NoDatabase, NotFound, Reader
from autopeft.version import __version__

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly wheel (works offline)."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def export_flags() -> set[str]:
    """The options `autopeft export` has here (so the shown command never uses one it
    lacks)."""
    from autopeft.cli import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions:  # argparse keeps subparsers here
        export = action.choices.get("export")
        if export is not None:
            return {s for a in export._actions for s in a.option_strings}
    return set()


def create_app(storage_url: str | None = None, *, poll_seconds: float = 1.0) -> Starlette:
    reader = Reader(storage_url)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = _fmt
    flags = export_flags()
    poll_ms = max(200, int(1000 * poll_seconds))

    def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = env.get_template(template).render(version=__version__, poll_ms=poll_ms, **context)
        return HTMLResponse(html, status_code=status)

    def no_database(exc: NoDatabase) -> HTMLResponse:
        return page("message.html", 503, title="No database yet", message=str(exc),
                    refresh=True)

    async def studies_page(request: Request) -> Response:
        return page("studies.html", title="Studies")

    def study_page(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            info = reader.info(name)
        except NoDatabase as exc:
            return no_database(exc)
        return page("study.html", title=f"Study {info.name}", name=info.name)

    def trial_page(request: Request) -> Response:
        name, number = request.path_params["name"], request.path_params["number"]
        try:
            data = reader.trial(name, number)
        except NoDatabase as exc:
            return no_database(exc)
        return page("trial.html", title=f"Trial {number} of {name}", name=name, t=data)

    def api_studies(request: Request) -> Response:
        try:
            return JSONResponse({"studies": reader.studies()})
        except NoDatabase as exc:
            return JSONResponse({"studies": [], "message": str(exc)})

    def api_study(request: Request) -> Response:
        name = _required(request, "name")
        chosen = {key: _number(request, key) for key, _, _ in ranking.CONTROLS
                  if key in request.query_params}
        try:
            return JSONResponse(reader.study(name, chosen, flags,
                                             since=request.query_params.get("since")))
        except NoDatabase as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)

    def api_trial(request: Request) -> Response:
        name = _required(request, "name")
        try:
            number = int(_required(request, "number"))
        except ValueError:
            raise HTTPException(400, "number must be an integer") from None
        try:
            return JSONResponse(reader.trial(name, number))
        except NoDatabase as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)

    def static(request: Request) -> Response:
        file = request.path_params["file"]
        if file == "plotly.min.js":
            return FileResponse(plotly_js(), media_type="text/javascript",
                                headers={"Cache-Control": "max-age=86400"})
        if file not in STATIC:
            raise HTTPException(404, f"no static file {file!r}")
        return FileResponse(HERE / "static" / file, media_type=STATIC[file],
                            headers={"Cache-Control": "no-cache"})

    def not_found(request: Request, exc: Exception) -> Response:
        detail = str(exc) if isinstance(exc, NotFound) else getattr(exc, "detail", "not found")
        status = getattr(exc, "status_code", 404)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": detail}, status_code=status)
        return page("message.html", status, title="Not found" if status == 404 else "Error",
                    message=detail, refresh=False)

    def server_error(request: Request, exc: Exception) -> Response:
        logger.error("dashboard error on %s", request.url.path, exc_info=exc)
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=500)
        return page("message.html", 500, title="Error", message=message, refresh=False)

    routes = [
        Route("/", studies_page),
        Route("/studies/{name:path}/trials/{number:int}", trial_page),
        Route("/studies/{name:path}", study_page),
        Route("/api/studies", api_studies),
        Route("/api/study", api_study),
        Route("/api/trial", api_trial),
        Route("/static/{file}", static),
    ]
    handlers = {NotFound: not_found, HTTPException: not_found, Exception: server_error}
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        reader.close()

    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.reader = reader
    return app


def _fmt(value: Any) -> str:
    """A stored value as the trial page shows it: floats to 6 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _required(request: Request, key: str) -> str:
    value = request.query_params.get(key)
    if value is None or value == "":
        raise HTTPException(400, f"the query parameter {key!r} is missing")
    return value


def _number(request: Request, key: str) -> float | None:
    text = request.query_params.get(key, "").strip()
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise HTTPException(400, f"{key}={text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise HTTPException(400, f"{key}={text!r} must be a finite number >= 0")
    return value
