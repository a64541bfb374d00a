"""A local HTTP server that serves from a daemon thread: what every fake server of the tests runs on."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class BackgroundHTTPServer(ThreadingHTTPServer):
    """Bound to a free port of ``address`` at once; serves once :meth:`start` is called, until :meth:`stop`."""

    daemon_threads = True

    def __init__(self, handler: type, address: str = "127.0.0.1") -> None:
        super().__init__((address, 0), handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> BackgroundHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
