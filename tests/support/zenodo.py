"""A local server that speaks the Zenodo record API, for ``miffi download`` tests."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeZenodo:
    """Serves a record of model files; can drop connections mid-file and corrupt files."""

    def __init__(self):
        self.files = {"miffi_v1.pt": bytes(range(256)) * 4000, "miffi_no_ps_v1.pt": b"no-ps" * 30000}
        self.drop_after: dict[str, int] = {}  # file → bytes sent before the first connection drops
        self.corrupt: set[str] = set()
        self.log: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.log.append((self.path, self.headers.get("Range")))
                if self.path == "/api/records/8342009":
                    body = json.dumps(server.record()).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                key = self.path.rsplit("/", 1)[-1]
                data = server.files.get(key)
                if data is None:
                    self.send_error(404)
                    return
                if key in server.corrupt:
                    data = b"X" + data[1:]
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                cut = server.drop_after.pop(key, None)
                if cut is not None:
                    self.wfile.write(data[start : start + cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def record(self):
        return {
            "id": 8342009,
            "files": [
                {
                    "key": key,
                    "size": len(data),
                    "checksum": "md5:" + hashlib.md5(data).hexdigest(),
                    "links": {"self": f"{self.url}/api/records/8342009/files/{key}"},
                }
                for key, data in self.files.items()
            ],
        }

    @property
    def record_url(self):
        return f"{self.url}/api/records/8342009"

    def downloads(self, key):
        return [entry for entry in self.log if entry[0].endswith(key)]
