"""The lifecycle every loopback test server shares: serve in a daemon thread, stop, `with`."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Any


class ThreadedServer:
    _httpd: ThreadingHTTPServer | None = None

    def _serve(self, httpd: ThreadingHTTPServer, name: str) -> None:
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True).start()

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
