"""HTTP routes of the app server, next to Streamlit's own (mounted by ``reading_app/server.py``).

``GET  <base>/api/tsct/v1/image/<ticket>/<layer>/<plane>/<slice>?fmt=raw[&overlay=zmap]`` or ``?fmt=png|jpeg&wl=<HU>&ww=<HU>``
    One slice image (see :meth:`reading_app.workstation.service.ImageService.render`): with
    ``fmt=raw`` (the viewer's default) the slice's values as little-endian int16, sent uncompressed
    (``Content-Encoding: identity``), and no window; ``overlay=zmap`` on the ``ct`` layer appends the
    z-map overlay of the same slice (palette indices and palette), checked as the z-map layer itself
    is (403 where the treatment does not show it). 200 with the image;
    401 unknown or expired ticket, no or another browser session's cookie, the case read finished,
    another reader's or another treatment's; **403 a layer the reading's treatment does not
    show**; 404 the layer's file is missing; 400 a bad plane, slice or window. Images are not kept
    in the browser's HTTP cache (``no-store``), so only the server decides whether a link still works.
``GET  <base>/api/tsct/v1/hu/<ticket>/<layer>/<plane>/<slice>?u=<px>&v=<px>[&linked=<layer>&linked_slice=<n>]``
    The true value (HU) of the voxel under image point ``(u, v)``, its voxel index and LPS mm, and
    with ``linked`` the same anatomy on that layer (see :mod:`reading_app.workstation.readout`).
    The same ticket checks and statuses as an image, for every layer it reads; 400 for the z-map.
``GET  <base>/api/tsct/v1/localizer/<ticket>/<plane>``
    The localizer beside the viewer: a PNG projection of the **current CT only** (the route takes
    no layer) as ``plane`` (coronal or sagittal; see :mod:`reading_app.workstation.localizer`).
    The same ticket checks and statuses as an image of the current CT; 400 for another plane.
``GET  <base>/api/tsct/v1/download/<token>``
    A file a page offered (export or report zip): only with the cookie of the browser session it
    was offered to, while the account still has one of the page's roles; 401/403 otherwise.
``POST <base>/api/tsct/v1/session/claim``  body ``{"code": "<claim code>"}``
    Exchanges a one-time claim code (made at log-in) for the ``tsct_session`` cookie
    (``HttpOnly; SameSite=Strict``; ``Secure`` behind HTTPS), so a reload keeps the reader logged in.
``POST <base>/api/tsct/v1/session/logout``
    Ends the cookie's session and clears the cookie.

POSTs are refused (403) unless they come from the app's own pages: the ``Origin`` header, when
sent, must name this host, and ``Sec-Fetch-Site``, when sent, must be ``same-origin``.

``<base>`` is ``/`` + ``server.baseUrlPath`` when the app runs under a path behind a reverse proxy.
"""

from __future__ import annotations

import json
from typing import Callable

from .errors import ImageLayerMissingError, LayerNotAllowedError, TicketError, ViewError
from .service import WorkstationRuntime, get_runtime

__all__ = ["API_PREFIX", "SESSION_COOKIE", "make_routes", "api_base"]

API_PREFIX = "/api/tsct/v1"
SESSION_COOKIE = "tsct_session"


def api_base(base_url_path: str = "") -> str:
    """The URL path of the API under ``server.baseUrlPath`` (e.g. ``/reader/api/tsct/v1``)."""
    base = str(base_url_path or "").strip("/")
    return (f"/{base}" if base else "") + API_PREFIX


def _is_https(request) -> bool:  # noqa: ANN001
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def _same_origin(request) -> bool:  # noqa: ANN001
    """POSTs must come from the app's own pages (Origin, when sent, must match Host; Sec-Fetch-Site, when sent, same-origin)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if not origin:
        return True
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host.split(",")[0].strip()


def _zip_or_read(path) -> bytes:  # noqa: ANN001
    """A folder as zip bytes (paths relative to its parent), or a file's bytes."""
    import io
    import zipfile
    from pathlib import Path

    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in sorted(path.rglob("*")):
            if item.is_file():
                archive.write(item, item.relative_to(path.parent))
    return buffer.getvalue()


def make_routes(base_url_path: str = "", runtime: Callable[[], WorkstationRuntime] = get_runtime) -> list:
    """The Starlette routes of the workstation API under ``base_url_path``."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    prefix = api_base(base_url_path)
    cookie_path = "/" + str(base_url_path or "").strip("/")
    no_store = {"Cache-Control": "no-store"}

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=no_store)

    #: the status of each refusal, first match wins (image and HU routes alike); a plain ValueError is an
    #: unreadable image file (cases.ExamReadError) or a bad number
    statuses = ((TicketError, 401), (LayerNotAllowedError, 403), (ImageLayerMissingError, 404), (ViewError, 400), (ValueError, 422))

    def refused(exc: ValueError) -> JSONResponse:
        return error(next(status for kind, status in statuses if isinstance(exc, kind)), str(exc))

    async def image(request):  # noqa: ANN001, ANN202
        p = request.path_params
        q = request.query_params
        try:
            level = float(q["wl"]) if "wl" in q else None
            width = float(q["ww"]) if "ww" in q else None
            fmt = q.get("fmt") or None
            overlay = q.get("overlay") or None
            rendered = await run_in_threadpool(
                runtime().images.render,
                p["ticket"],
                p["layer"],
                p["plane"],
                int(p["index"]),
                level_hu=level,
                width_hu=width,
                fmt=fmt,
                session_token=request.cookies.get(SESSION_COOKIE),
                overlay=overlay,
            )
        except ValueError as exc:
            return refused(exc)
        headers = {
            # no-store: the browser's HTTP cache must not answer a replayed link (an aid from an earlier
            # reading) without asking the server; the viewer keeps the open case's images in memory itself
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        }
        if rendered.media_type == "application/octet-stream":
            # raw slices go as they are: the app server's gzip (level 5) would cost more per slice
            # than everything else the route does (an encoding already set makes it pass them by)
            headers["Content-Encoding"] = "identity"
        return Response(rendered.data, media_type=rendered.media_type, headers=headers)

    async def hu(request):  # noqa: ANN001, ANN202
        p = request.path_params
        q = request.query_params
        try:
            u, v = float(q["u"]), float(q["v"])
            linked = q.get("linked") or None
            linked_slice = int(q["linked_slice"]) if q.get("linked_slice") not in (None, "") else None
        except (KeyError, ValueError):
            return error(400, "Give the image position as ?u=<number>&v=<number> (and linked_slice as a whole number).")
        try:
            values = await run_in_threadpool(
                runtime().values.read,
                p["ticket"],
                p["layer"],
                p["plane"],
                int(p["index"]),
                u,
                v,
                linked=linked,
                linked_slice=linked_slice,
                session_token=request.cookies.get(SESSION_COOKIE),
            )
        except ValueError as exc:
            return refused(exc)
        return JSONResponse(values, headers={**no_store, "X-Content-Type-Options": "nosniff"})

    async def localizer(request):  # noqa: ANN001, ANN202
        rt = runtime()
        if rt.localizers is None:
            return error(404, "This server makes no localizer.")
        try:
            data = await run_in_threadpool(
                rt.localizers.render, request.path_params["ticket"], request.path_params["plane"], session_token=request.cookies.get(SESSION_COOKIE)
            )
        except ValueError as exc:
            return refused(exc)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})

    async def claim(request):  # noqa: ANN001, ANN202
        if not _same_origin(request):
            return error(403, "Cross-site request refused.")
        try:
            body = json.loads((await request.body()) or b"{}")
            code = str(body.get("code", ""))
        except (ValueError, AttributeError):
            return error(400, 'Send {"code": "..."}.')
        token = await run_in_threadpool(runtime().sessions.claim, code)
        if token is None:
            return error(401, "This log-in link is unknown, used or expired; log in again.")
        response = JSONResponse({"ok": True}, headers=no_store)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=_is_https(request),
            path=cookie_path,
            max_age=int(runtime().sessions.idle_s),
        )
        return response

    async def logout(request):  # noqa: ANN001, ANN202
        if not _same_origin(request):
            return error(403, "Cross-site request refused.")
        rt = runtime()
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            rt.tickets.revoke(session_key=rt.sessions.key_of(token))
            rt.downloads.revoke(session_key=rt.sessions.key_of(token))
            await run_in_threadpool(rt.sessions.end, token)
        response = JSONResponse({"ok": True}, headers=no_store)
        response.delete_cookie(SESSION_COOKIE, path=cookie_path, httponly=True, samesite="strict")
        return response

    async def download(request):  # noqa: ANN001, ANN202
        rt = runtime()
        item = rt.downloads.get(request.path_params["token"])
        cookie = request.cookies.get(SESSION_COOKIE)
        if item is None:
            return error(404, "This download link is unknown or has expired; export again.")
        web = await run_in_threadpool(rt.sessions.lookup, cookie) if cookie else None
        if web is None or rt.sessions.key_of(cookie) != item.session_key or web.account_id != item.account_id:
            return error(401, "Log in (in the browser that made this export) to download it.")
        if web.role not in item.roles and web.role != "admin":
            return error(403, "Your account may not download this.")
        if not item.path.exists():
            return error(404, "The exported files are no longer on the server; export again.")
        data = await run_in_threadpool(_zip_or_read, item.path)
        quoted = item.filename.replace('"', "")
        return Response(
            data,
            media_type=item.media_type,
            headers={**no_store, "Content-Disposition": f'attachment; filename="{quoted}"', "X-Content-Type-Options": "nosniff"},
        )

    return [
        Route(prefix + "/image/{ticket}/{layer}/{plane}/{index:int}", image, methods=["GET"]),
        Route(prefix + "/hu/{ticket}/{layer}/{plane}/{index:int}", hu, methods=["GET"]),
        Route(prefix + "/localizer/{ticket}/{plane}", localizer, methods=["GET"]),
        Route(prefix + "/download/{token}", download, methods=["GET"]),
        Route(prefix + "/session/claim", claim, methods=["POST"]),
        Route(prefix + "/session/logout", logout, methods=["POST"]),
    ]
