"""The review app's web server: one page, a small JSON API and the pictures.

Bound to 127.0.0.1 unless told otherwise; every request must carry the session's random
token (the printed URL holds it; the page then keeps it in a same-site cookie and sends it
with every call), so neither another user of a shared machine nor a web page in the
user's browser can read or change the decisions. Reach it from a laptop through SSH port
forwarding (``ssh -L 8765:localhost:8765 gpu-node``) and open the printed URL there.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
from importlib import resources
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server

from miffi.classify.combine import CATEGORIES
from miffi.errors import MiffiError
from miffi.labels import GROUPS
from miffi.preprocess.metric_names import METRICS
from miffi.review.session import PICTURES, ReviewSession

log = logging.getLogger(__name__)

COOKIE = "miffi_token"
HEADER = "X-Miffi-Token"
#: Keys of the labelling page, group by group, in label order.
LABEL_KEYS = {"film": "1234", "drift": "qw", "crystallinity": "asd", "contamination": "zx"}
#: Keys of the curation page, in category order.
CATEGORY_KEYS = "1234567"


def page_config(session: ReviewSession, token: str, order: str) -> dict[str, Any]:
    """What the page needs to know before its first call."""
    return {
        "token": token,
        "mode": session.mode,
        "total": len(session.table),
        "decided": session.decided_count(),
        "orders": session.orders,
        "order": order,
        "spectrum": session.cache.config.channels > 1,
        "groups": {g: list(labels) for g, labels in GROUPS.items()},
        "label_keys": LABEL_KEYS,
        "categories": list(CATEGORIES),
        "category_keys": CATEGORY_KEYS,
        "has_calls": session.has_calls,
        "metrics": [m for m in METRICS if m in session.table],
    }


def _page(session: ReviewSession, token: str, order: str) -> str:
    template = resources.files("miffi.review").joinpath("page.html").read_text(encoding="utf-8")
    config = json.dumps(page_config(session, token, order)).replace("</", "<\\/")  # safe inside <script>
    return template.replace("/*CONFIG*/{}", config)


def create_app(session: ReviewSession, token: str, order: str = "acquisition") -> Flask:
    """The Flask app of one session, opening in ``order``."""
    app = Flask("miffi.review")

    @app.before_request
    def check_token() -> Response | None:
        given = request.headers.get(HEADER) or request.cookies.get(COOKIE) or request.args.get("token") or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            return Response(
                "miffi: this page needs the token of the URL miffi printed when it started\n",
                status=403,
                mimetype="text/plain",
            )
        if request.method == "POST" and request.headers.get(HEADER) != token:  # no cross-site writes
            return Response("miffi: changes need the token header\n", status=403, mimetype="text/plain")
        return None

    @app.errorhandler(MiffiError)
    def refused(error: MiffiError) -> tuple[Response, int]:
        return jsonify(error=str(error)), 400

    @app.get("/")
    def page() -> Response:
        response = Response(_page(session, token, order), mimetype="text/html")
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/order")
    def rows_in_order() -> Response:
        rows = session.order(request.args.get("order", "acquisition"), request.args.getlist("where"))
        return jsonify(rows=rows, start=session.first_undecided(rows))

    @app.get("/api/item/<int:row>")
    def item(row: int) -> Response:
        if not 0 <= row < len(session.table):
            raise MiffiError(f"no micrograph at row {row}")
        ahead = [int(r) for r in request.args.get("ahead", "").split(",") if r.strip().isdigit()]
        session.look_ahead([r for r in ahead if 0 <= r < len(session.table)])
        return jsonify(session.item(row))

    @app.get("/picture/<int:row>/<kind>.png")
    def picture(row: int, kind: str) -> Response:
        if not 0 <= row < len(session.table) or kind not in PICTURES:
            return Response(status=404)
        response = Response(session.picture(row, kind), mimetype="image/png")
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    @app.post("/api/labels")
    def labels() -> Response:
        body = request.get_json(force=True)
        return jsonify(labelled=session.save_labels(_rows(body), body.get("labels")))

    @app.post("/api/overrides")
    def overrides() -> Response:
        body = request.get_json(force=True)
        return jsonify(overridden=session.save_override(_rows(body), body.get("category")))

    return app


def _rows(body: Any) -> list[int]:
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, int) for r in rows):
        raise MiffiError("a change names its micrographs by row numbers: {'rows': [..]}")
    return rows


def serve(
    session: ReviewSession,
    host: str = "127.0.0.1",
    port: int = 8765,
    order: str = "acquisition",
    token: str | None = None,
) -> None:
    """Serve ``session`` until interrupted, printing the URL to open; it opens in ``order``
    where the session can give it (a dataset without calls: acquisition order)."""
    order = order if order in session.orders else "acquisition"
    token = token or secrets.token_urlsafe(18)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    try:
        server = make_server(host, port, create_app(session, token, order), threaded=True)
    except OSError as error:
        raise MiffiError(
            f"cannot listen on {host}:{port}: {error.strerror or error} (give another --port; 0 takes any free one)"
        ) from None
    shown = "localhost" if host in ("127.0.0.1", "localhost", "::1") else host
    url = f"http://{shown}:{server.server_port}/?token={token}"
    print(f"miffi: {session.mode} {len(session.table)} micrographs at {url}", flush=True)
    print(f"miffi: from another machine: ssh -L {server.server_port}:localhost:{server.server_port} THIS_HOST, "
          "then open that URL there; Ctrl-C stops", flush=True)  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
