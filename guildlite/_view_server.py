"""``guildlite view``'s server: the page and the runs' details and files, on 127.0.0.1 only.

A stdlib http.server; the page is ``_view_page``'s over ``_view_data``'s dict.

Requests are answered in server threads, but ``serve`` has the page's data loaded in the main
thread (``MainThread``), one load at a time: the load applies ``--filter``, whose ``~`` regexes
run over labels and notes anyone may have set since the server started, and only the main thread
can bound a regex (``_regex_guard``: a SIGALRM stops it). A regex that backtracks without end then
fails that page load, named, instead of holding a thread and a CPU for years. Running the filter
once at start-up and serving its result would not do: the page shows runs as they are now.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable
from urllib.parse import unquote, urlsplit

from ._errors import GuildliteError, RunNotFoundError
from ._inspect import open_run_file
from ._run import Run, load_run
from ._view_data import run_data
from ._view_page import plotly_js, render_html, to_json


def make_server(load: Callable[[bool], dict[str, Any]], runs_dir: Path, port: int = 0) -> Any:
    """An http.server on 127.0.0.1:``port`` (0: a free one), not yet serving.

    ``/`` is the page, built afresh from ``load(details=False)`` on each request (reload to see
    new runs); the page asks ``/run/RUN_ID.json`` for a run's details (``run_data``) when it
    shows them. ``/data.json`` is the page's data; ``/files/RUN_ID/PATH`` a file of a run in
    ``runs_dir``. Requests must name this host (127.0.0.1 or localhost) in their Host header, so
    that a web page elsewhere cannot reach the runs through DNS rebinding.
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    js = plotly_js()

    def one_run(run_id: str) -> Run:
        if not run_id or run_id.startswith(".") or "/" in run_id or "\\" in run_id:
            raise RunNotFoundError(f"no run {run_id!r}")
        return load_run(runs_dir / run_id)

    class Handler(BaseHTTPRequestHandler):
        server_version = "guildlite-view"

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "localhost"):
                self._send(403, "text/plain; charset=utf-8", b"forbidden host\n")
                return
            path = unquote(urlsplit(self.path).path)
            try:
                if "\0" in path:  # no file name holds one: answered before any path is made of it
                    self._send(400, "text/plain; charset=utf-8", b"bad request: a NUL in the path\n")
                elif path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", render_html(load(False), js).encode("utf-8"))
                elif path == "/data.json":
                    self._send(200, "application/json", to_json(load(False)).encode("utf-8"))
                elif path.startswith("/run/") and path.endswith(".json"):
                    data = run_data(one_run(path[len("/run/") : -len(".json")]))
                    self._send(200, "application/json", to_json(data).encode("utf-8"))
                elif path.startswith("/files/"):
                    run_id, _, rel = path[len("/files/") :].partition("/")
                    with open_run_file(one_run(run_id), rel) as f:
                        self._file(f)
                elif path == "/favicon.ico":
                    self._send(204, "text/plain", b"")
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            except GuildliteError as e:
                self._send(404, "text/plain; charset=utf-8", f"{e}\n".encode())
            except Exception as e:  # a bug: the page gets an answer that says so, not an empty reply
                self._send(500, "text/plain; charset=utf-8", f"internal error: {type(e).__name__}: {e}\n".encode())

        def _file(self, f: BinaryIO) -> None:
            size = os.fstat(f.fileno()).st_size
            head = f.read(min(size, 4096))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8" if _is_text(head) else "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(head)
            left = size - len(head)  # exactly what Content-Length says, even if the file grows meanwhile
            while left > 0 and (chunk := f.read(min(left, 1 << 16))):
                self.wfile.write(chunk)
                left -= len(chunk)

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the terminal shows the URL, not every request

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def _is_text(head: bytes) -> bool:
    """Whether a file whose first bytes are ``head`` reads as UTF-8 text."""
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start >= len(head) - 4  # a character cut at the end of the sample
    return True


class MainThread:
    """Calls made in any thread, run one at a time in the main thread while it is in ``run``."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], threading.Event, list[Any]]] = queue.Queue()

    def call(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, run in the main thread (now, if this is it); what it raised is raised here."""
        if threading.current_thread() is threading.main_thread():
            return fn()
        done, box = threading.Event(), list[Any]()  # [error] or [None, result]
        self._jobs.put((fn, done, box))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[1]

    def run(self) -> None:
        """Run the calls as they come, until interrupted (KeyboardInterrupt)."""
        while True:
            try:
                fn, done, box = self._jobs.get(timeout=1.0)
            except queue.Empty:
                continue
            try:
                box[:] = [None, fn()]
            except KeyboardInterrupt:
                box[:] = [GuildliteError("the server is stopping")]
                raise
            except BaseException as e:  # the caller's error: raised in its thread, not here
                box[:] = [e]
            finally:
                done.set()


def serve(
    load: Callable[[bool], dict[str, Any]],
    runs_dir: Path,
    port: int = 0,
    open_browser: bool = True,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the page until Ctrl-C (or SIGTERM)."""
    import signal

    main = MainThread()
    try:
        server = make_server(lambda details: main.call(lambda: load(details)), runs_dir, port)
    except OSError as e:
        raise GuildliteError(f"cannot serve on 127.0.0.1:{port}: {e.strerror or e}", exit_code=2) from None
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    echo(f"guildlite: view at {url} (Ctrl-C to stop)")
    # Only a graphical browser: a console one (lynx, w3m) would take over this terminal.
    gui = sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if open_browser and gui:
        import webbrowser

        threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _stop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        main.run()
    except KeyboardInterrupt:
        print("guildlite: view stopped", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.shutdown()
        server.server_close()
