"""The witness's HTTP interface: POST <prefix>/add-checkpoint and GET <prefix>/<origin hash>/checkpoint."""

from __future__ import annotations

import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gateway.witness.core import MAX_BODY, Response, Witness

_ORIGIN_HASH = re.compile(r"^/([0-9a-f]{64})/checkpoint$")


def make_server(witness: Witness, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server for `witness` on (host, port); port 0 picks a free port."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the protocol recommends

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        def do_POST(self) -> None:
            if self.path != "/add-checkpoint":
                self._send(Response(404, b"not found\n"))
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self.close_connection = True
                self._send(Response(400, b"a body with a Content-Length of at most 64 KiB is required\n"))
                return
            self._send(witness.add_checkpoint(self.rfile.read(length)))

        def do_GET(self) -> None:
            match = _ORIGIN_HASH.match(self.path)
            self._send(witness.latest(match.group(1)) if match else Response(404, b"not found\n"))

        def log_message(self, format: str, *args: object) -> None:  # the stdlib's signature
            pass  # request lines are not logged; the witness's own decisions are in its responses

    return ThreadingHTTPServer((host, port), Handler)
