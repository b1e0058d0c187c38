"""``guildlite view``: one web page over runs, served on localhost or written as a single file.

``view_data`` gathers what the page shows (a plain, JSON-serialisable dict); ``render_html`` puts
it into a page with plotly.js inlined (from the ``plotly`` package, an optional extra), so the
page works offline and as one file; ``serve`` answers on 127.0.0.1 with the stdlib http.server.
Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Sequence
from urllib.parse import unquote, urlsplit

from ._errors import GuildliteError, RunNotFoundError
from ._files import META_DIR, now_iso
from ._inspect import duration, open_run_file
from ._run import Run, load_run
from ._runfiles import RunFileError, listed_size, open_file
from ._scalars import MAX_LINE_BYTES, MAX_SCALARS_BYTES, summarize
from ._selection import RunList, select_runs, with_trials

FORMAT = 1
MAX_POINTS = 2000  # per scalar series: longer ones are thinned (evenly, keeping the last point)
TAIL_BYTES = 8192  # of output.log, at most TAIL_LINES lines
TAIL_LINES = 100
MAX_FILES = 200  # listed per run


# --- data ----------------------------------------------------------------------------------------


def view_data(
    runs: Sequence[Run],
    runs_dir: Path | None = None,
    details: bool = True,
    scalars: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What the page shows for ``runs``: one entry per run, plus the flag and scalar names.

    Each run carries its record (flags, status...) and a scalar summary (as ``compare`` computes
    it). With ``details`` (a static page) also its hook trace, command, scalar series (``{key:
    {"step": [...], "value": [...]}}``, at most MAX_POINTS points each), the tail of
    ``output.log`` and its files (without ``.guildlite/``); without (the server, which answers
    ``/run/ID.json`` with ``run_data`` when the page asks), only the table's fields. ``scalars``
    maps run ids to summaries already at hand (the index's).
    """
    flag_cols: dict[str, None] = {}
    scalar_keys: dict[str, None] = {}
    rows = []
    for run in runs:
        if details:
            row = run_data(run)
        else:
            summary = scalars.get(run.id) if scalars is not None else None
            row = _record(run, summarize(run.paths.scalars) if summary is None else summary)
        if not run.is_batch:
            flag_cols.update(dict.fromkeys(run.flags))
        scalar_keys.update(dict.fromkeys(row["scalars"]))
        rows.append(row)
    return {
        "format": FORMAT,
        "generated": now_iso(),
        "runs_dir": str(runs_dir) if runs_dir is not None else None,
        "details": details,
        "runs": rows,
        "flag_cols": list(flag_cols),
        "scalar_keys": list(scalar_keys),
    }


def _record(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": run.id,
        "op": run.op,
        "status": run.status,
        "exit_code": run.exit_code,
        "label": run.label,
        "tags": run.tags,
        "created": run.created,
        "started": run.started,
        "stopped": run.stopped,
        "time": duration(run),
        "is_batch": run.is_batch,
        "parent": run.parent_id,
        "trials": run.trial_ids,
        "flags": run.flags,
        "scalars": summary,
    }


def run_data(run: Run) -> dict[str, Any]:
    """One run with every detail the page shows (see ``view_data``)."""
    series, summary = read_series(run.paths.scalars)
    tail, out_size = output_tail(run.paths.output_log)
    files, n_files = list_files(str(run.run_dir))
    return {
        **_record(run, summary),
        "host": run.host,
        "batch": run.batch,
        "error": run.error,
        "cmd": run.cmd,
        "nproc_per_node": run.nproc_per_node,
        "gpus": run.gpus,
        "remote": run.remote,
        "plugins": run.plugins,
        "attrs": run.attrs,
        "run_dir": str(run.run_dir),
        "series": series,
        "output": tail,
        "output_size": out_size,
        "files": files,
        "files_total": n_files,
    }


def _rows(path: Path) -> list[Any]:
    """The JSON rows of a scalars file: a regular file inside its run dir only, and at most
    MAX_SCALARS_BYTES of it, read in chunks (a line longer than MAX_LINE_BYTES is dropped)."""
    try:
        f = open_file(path.parent, path.name)
    except RunFileError:
        return []
    rows: list[Any] = []
    with f:
        left, rest = MAX_SCALARS_BYTES, b""
        while left > 0 and (chunk := f.read(min(left, 8 << 20))):
            left -= len(chunk)
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            rest = rest if len(rest) <= MAX_LINE_BYTES else b""
            rows += _parse([line for line in lines if line and len(line) <= MAX_LINE_BYTES])
        rows += _parse([rest] if rest else [])
    return rows


def _parse(lines: list[bytes]) -> list[Any]:
    if not lines:
        return []
    try:  # one parse for them all: several times faster
        return json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:  # a torn last line, or another bad one: line by line, skipping those
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line.decode("utf-8", "replace")))
            except ValueError:
                continue
        return rows


def read_series(path: Path) -> tuple[dict[str, dict[str, list[Any]]], dict[str, dict[str, Any]]]:
    """Per key, the (step, value) series of a scalars file, and its summary as ``summarize`` gives it.

    One read for both. A null value (NaN/inf when logged) stays in the series as a gap; rows
    without a step take their position in the key's series.
    """
    series: dict[str, dict[str, list[Any]]] = {}
    summary: dict[str, dict[str, Any]] = {}
    for row in _rows(path):
        if not isinstance(row, dict) or "key" not in row:
            continue
        v = row.get("value")
        number = isinstance(v, (int, float))
        if not number and v is not None:
            continue
        key = str(row["key"])
        s = series.get(key)
        if s is None:
            s = series[key] = {"step": [], "value": []}
        step = row.get("step")
        s["step"].append(step if isinstance(step, (int, float)) else len(s["step"]))
        s["value"].append(v)
        if not number:
            continue
        m = summary.get(key)
        if m is None:
            summary[key] = {"last": v, "min": v, "max": v, "step": row.get("step", 0), "count": 1}
        else:
            m["last"], m["step"], m["count"] = v, row.get("step", m["step"]), m["count"] + 1
            if v < m["min"]:
                m["min"] = v
            elif v > m["max"]:
                m["max"] = v
    for s in series.values():
        n = len(s["step"])
        if n > MAX_POINTS:
            stride = math.ceil(n / MAX_POINTS)
            keep = list(range(0, n - 1, stride)) + [n - 1]
            s["step"] = [s["step"][i] for i in keep]
            s["value"] = [s["value"][i] for i in keep]
    return series, summary


def output_tail(path: Path) -> tuple[str, int]:
    """The last lines of a file (at most TAIL_BYTES, TAIL_LINES lines) and its size: a regular
    file inside its dir only (``_runfiles``), else nothing."""
    try:
        f = open_file(path.parent, path.name)
    except RunFileError:
        return "", 0
    with f:
        size = os.fstat(f.fileno()).st_size
        if size > TAIL_BYTES:
            f.seek(size - TAIL_BYTES)
            data = f.read(TAIL_BYTES)
            cut = data.find(b"\n")
            data = data[cut + 1 :] if 0 <= cut < len(data) - 1 else data
        else:
            data = f.read(TAIL_BYTES)
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-TAIL_LINES:]), size


def list_files(root: str, limit: int = MAX_FILES) -> tuple[list[list[Any]], int]:
    """``[[relative path, size], ...]`` (sorted, at most ``limit``) and the number of files.

    guildlite's own ``.guildlite/`` is left out; symlinked dirs are not followed, and a symlink's
    size is its target's only when that lies inside ``root`` (``_runfiles.listed_size``).
    """
    base = os.path.realpath(root)
    out: list[list[Any]] = []
    total = 0
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            it = os.scandir(os.path.join(base, rel) if rel else base)
        except OSError:
            continue
        with it:
            for e in it:
                name = f"{rel}/{e.name}" if rel else e.name
                try:
                    if e.is_dir(follow_symlinks=False):
                        if name != META_DIR:
                            stack.append(name)
                        continue
                    total += 1
                    if len(out) < limit:
                        out.append([name, listed_size(base, e.path)])
                except OSError:
                    continue
    out.sort()
    return out, total


def load_view(runs_dir: Path, specs: Sequence[str] = (), details: bool = True) -> dict[str, Any]:
    """``view_data`` for the runs ``specs`` selects in ``runs_dir`` (default: all), batches with trials.

    Without ``details`` the records and scalar summaries come from the runs index (as for
    ``guildlite runs`` and ``compare``), which keeps a page over thousands of runs quick.
    """
    everything = RunList(runs_dir)
    chosen = with_trials(select_runs(everything, specs)) if specs else None
    if details:
        return view_data(everything[:] if chosen is None else chosen, runs_dir)
    from ._index import load_summaries

    loaded = load_summaries(everything, None if chosen is None else [r.id for r in chosen], scalars=True)
    return view_data([r for r, _ in loaded], runs_dir, details=False, scalars={r.id: sc for r, sc in loaded})


# --- page ----------------------------------------------------------------------------------------

_MISSING = "guildlite view needs plotly (an optional extra): pip install 'guildlite[view]'"
_js_cache: list[str] = []


def plotly_js() -> str:
    """plotly.js as bundled in the ``plotly`` Python package; GuildliteError if it is not installed."""
    if not _js_cache:
        try:
            from plotly.offline import get_plotlyjs
        except ImportError:
            raise GuildliteError(_MISSING, exit_code=2) from None
        js = get_plotlyjs()
        # Inlined in a <script>: the text must not close it (plotly.min.js has no such text today).
        _js_cache.append(js.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT"))
    return _js_cache[0]


def to_json(data: Any) -> str:
    """Compact JSON that is safe inside a <script> element (no ``<``, ``>``, ``&`` left as-is)."""
    try:
        text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:  # a NaN/inf flag value: JSON has no such number
        text = json.dumps(_finite(data), separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def render_html(data: dict[str, Any], js: str | None = None) -> str:
    """The page: one self-contained HTML document (plotly.js and the data inlined)."""
    js = plotly_js() if js is None else js
    n = len(data["runs"])
    title = f"guildlite view ({n} run{'s' if n != 1 else ''})"
    return "".join(
        (_PAGE_HEAD.replace("__TITLE__", title), js, _PAGE_BODY, to_json(data), _PAGE_END, _APP_JS, _PAGE_TAIL)
    )


def write_report(path: Path, data: dict[str, Any]) -> int:
    """Write the page to ``path`` (one static file); returns its size in bytes."""
    raw = render_html(data).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(raw)
    os.replace(tmp, path)
    return len(raw)


# --- server --------------------------------------------------------------------------------------


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


def serve(
    load: Callable[[bool], dict[str, Any]],
    runs_dir: Path,
    port: int = 0,
    open_browser: bool = True,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the page until Ctrl-C (or SIGTERM)."""
    import signal

    try:
        server = make_server(load, runs_dir, port)
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
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("guildlite: view stopped", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()


# --- the page's HTML, CSS and JavaScript -----------------------------------------------------------

_PAGE_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --fg: #1d2330; --muted: #6b7385; --line: #e3e6ec; --bg: #f6f7f9; --accent: #2f6fde; --hl: #eaf1ff; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 12px; padding: 8px 14px; background: #fff;
  border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 5; }
header h1 { font-size: 16px; margin: 0; }
header h1 span { color: var(--accent); }
#summary { color: var(--muted); flex: 1; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
input[type=search] { width: 260px; padding: 4px 8px; border: 1px solid #c9ced8; border-radius: 4px; font: inherit; }
select, button { font: inherit; }
button { border: 1px solid #c9ced8; background: #fff; border-radius: 4px; padding: 2px 8px; cursor: pointer; }
button:hover { background: var(--hl); }
#errors { background: #fdecec; color: #a11; padding: 6px 14px; border-bottom: 1px solid #f3b9b9; }
main { padding: 10px 14px; display: flex; flex-direction: column; gap: 10px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; }
#table-wrap { max-height: 38vh; overflow: auto; }
table { border-collapse: collapse; width: 100%; }
#runs th, #runs td { padding: 3px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; text-align: left; }
#runs th { position: sticky; top: 0; background: #fafbfc; cursor: pointer; user-select: none; font-weight: 600; z-index: 1; }
#runs th.flag { color: #7a4fb5; }
#runs th.scalar { color: #167a55; }
#runs th .arrow { color: var(--accent); }
#runs td.num { text-align: right; font-variant-numeric: tabular-nums; }
#runs tr.run { cursor: pointer; }
#runs tr.run:hover td { background: #f4f7fd; }
#runs tr.current td { background: var(--hl); }
#runs tr.batch td { font-weight: 600; background: #fbfbf4; }
#runs tr.trial td.id { padding-left: 22px; }
#runs td.id { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.toggle { display: inline-block; width: 14px; color: var(--muted); }
.swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px; margin-left: 4px; vertical-align: middle; }
.st { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; background: #eceef2; }
.st-completed { background: #e1f4e8; color: #17693b; }
.st-error { background: #fbe3e3; color: #a11; }
.st-terminated { background: #fdf0dc; color: #94560a; }
.st-running, .st-pending { background: #e3ecfc; color: #1d4fa8; }
#more { padding: 6px 8px; color: var(--muted); }
#lower { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 10px; align-items: start; }
@media (max-width: 900px) { #lower { grid-template-columns: minmax(0, 1fr); } }
.section-head { display: flex; align-items: center; gap: 10px; padding: 6px 10px; border-bottom: 1px solid var(--line); }
.section-head h2 { font-size: 14px; margin: 0; }
.note { color: var(--muted); }
.empty { color: var(--muted); padding: 16px; }
#panel { padding: 0 0 10px; }
#panel h3 { font-size: 13px; margin: 12px 10px 4px; }
#panel table { margin: 0 10px; width: calc(100% - 20px); }
#panel td { padding: 2px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
#panel td.k { color: var(--muted); width: 30%; }
#panel pre { margin: 0 10px; padding: 6px 8px; background: #14171f; color: #d8dde8; border-radius: 4px;
  max-height: 260px; overflow: auto; font-size: 11.5px; white-space: pre-wrap; word-break: break-all; }
#panel pre.err { background: #fdecec; color: #a11; }
#panel .controls { display: flex; gap: 8px; align-items: center; margin: 4px 10px; flex-wrap: wrap; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; word-break: break-all; }
a { color: var(--accent); }
</style>
<script>
"""

_PAGE_BODY = """
</script>
</head>
<body>
<header>
  <h1>guild<span>lite</span> view</h1>
  <span id="summary"></span>
  <input id="filter" type="search" placeholder="filter: text, lr=0.1, an id..." aria-label="filter runs">
  <select id="status-filter" aria-label="status">
    <option value="">any status</option><option>completed</option><option>error</option>
    <option>terminated</option><option>running</option><option>pending</option><option>staged</option>
  </select>
</header>
<div id="errors" hidden></div>
<main>
  <section id="table-wrap"><table id="runs"><thead></thead><tbody></tbody></table><div id="more"></div></section>
  <div id="lower">
    <section id="curves-wrap">
      <div class="section-head"><h2>Scalars</h2><span id="curves-note" class="note"></span>
        <label><input type="checkbox" id="logy"> log y</label>
        <button id="clear-sel" type="button">clear</button></div>
      <div id="curves"></div>
    </section>
    <section id="panel"><div class="empty">Click a run to see its flags, hooks, output and files.</div></section>
  </div>
</main>
<script type="application/json" id="gl-data">"""

_PAGE_END = """</script>
<script>
"""

_PAGE_TAIL = """
</script>
</body>
</html>
"""

_APP_JS = r"""
(function () {
'use strict';
const errorsBox = document.getElementById('errors');
function reportError(msg) { errorsBox.hidden = false; errorsBox.append(el('div', null, 'page error: ' + msg)); }
window.addEventListener('error', e => reportError(e.message));
window.addEventListener('unhandledrejection', e => reportError(e.reason && e.reason.message || e.reason));

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat(Infinity)) if (c != null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

const D = JSON.parse(document.getElementById('gl-data').textContent);
const RUNS = D.runs;
const byId = new Map(RUNS.map(r => [r.id, r]));
const kids = new Map();
for (const r of RUNS) {
  if (r.parent && byId.has(r.parent)) {
    if (!kids.has(r.parent)) kids.set(r.parent, []);
    kids.get(r.parent).push(r);
  }
}
const top = RUNS.filter(r => !(r.parent && byId.has(r.parent)));
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const colors = new Map();
const PLOT_CONFIG = { displaylogo: false, responsive: true };

// --- formatting ---
function pad(n) { return String(n).padStart(2, '0'); }
function fmt(v) {
  if (v == null) return '';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : String(+v.toPrecision(6));
  }
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function fmtDur(s) {
  if (s == null) return '';
  if (s < 60) return s.toFixed(1) + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + pad(Math.round(s % 60)) + 's';
  return Math.floor(s / 3600) + 'h' + pad(Math.floor(s % 3600 / 60)) + 'm';
}
function fmtSize(n) {
  const u = ['B', 'K', 'M', 'G'];
  let i = 0;
  while (n >= 1024 && i < 3) { n /= 1024; i++; }
  return i ? n.toFixed(1) + u[i] : n + 'B';
}
function flagText(r) { return Object.entries(r.flags || {}).map(([k, v]) => k + '=' + fmt(v)).join(' '); }
function plotText(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'); }
const varying = new Map();  // batch id -> the flags whose value differs between its trials
for (const [id, ks] of kids) {
  const names = [...new Set(ks.flatMap(t => Object.keys(t.flags || {})))];
  varying.set(id, names.filter(n => new Set(ks.map(t => JSON.stringify(t.flags[n]))).size > 1));
}
function runName(r) {
  let s = r.id.slice(-6);
  if (r.label) s += ' ' + r.label;
  else if (r.parent && varying.has(r.parent)) s += ' ' + varying.get(r.parent).map(k => k + '=' + fmt(r.flags[k])).join(' ');
  return s.length > 48 ? s.slice(0, 47) + '\u2026' : s;
}
function colorOf(id) {
  if (!colors.has(id)) colors.set(id, PALETTE[colors.size % PALETTE.length]);
  return colors.get(id);
}
function statusBadge(s) { return el('span', { class: 'st st-' + s }, s); }
for (const r of RUNS) {
  r._hay = [r.id, r.op, r.status, r.label, (r.tags || []).join(' '), flagText(r), r.parent || ''].join(' ').toLowerCase();
}

// --- state, kept in the URL hash: #run=ID&sel=ID,ID&sort=[-]COLUMN&q=TEXT&status=S
// (COLUMN: id, op, status, label, started, time, flag:NAME, scalar:KEY); a batch's plot also
// reads metric=KEY&plot=parcoords ---
const state = { sort: null, desc: false, filter: [], status: '', limit: 500, current: null, selected: new Set(), collapsed: new Set() };
const hash = new URLSearchParams(location.hash.slice(1));
function saveHash() {
  const p = new URLSearchParams();
  if (state.current) p.set('run', state.current);
  if (state.selected.size) p.set('sel', [...state.selected].join(','));
  if (state.sort) p.set('sort', (state.desc ? '-' : '') + state.sort);
  const q = document.getElementById('filter').value.trim();
  if (q) p.set('q', q);
  if (state.status) p.set('status', state.status);
  history.replaceState(null, '', '#' + p.toString());
}

// --- the runs table ---
const COLUMNS = [
  { key: 'id', title: 'run', get: r => r.id, cls: 'id' },
  { key: 'op', title: 'op', get: r => r.op },
  { key: 'status', title: 'status', get: r => r.status, show: r => statusBadge(r.status) },
  { key: 'label', title: 'label', get: r => r.label || null },
  { key: 'started', title: 'started', get: r => r.started || r.created, show: r => fmtTime(r.started || r.created) },
  { key: 'time', title: 'time', get: r => r.time, show: r => fmtDur(r.time), num: true },
  ...D.flag_cols.map(k => ({ key: 'flag:' + k, title: k, kind: 'flag', get: r => (r.is_batch ? null : r.flags[k]), num: true })),
  ...D.scalar_keys.map(k => ({ key: 'scalar:' + k, title: k, kind: 'scalar', get: r => (r.scalars[k] ? r.scalars[k].last : null), num: true })),
];

function compare(a, b) {
  if (a == null || a === '') return b == null || b === '' ? 0 : 1;
  if (b == null || b === '') return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'number') return -1;
  if (typeof b === 'number') return 1;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}
function sorted(list) {
  if (!state.sort) return list;
  const col = COLUMNS.find(c => c.key === state.sort);
  const order = (a, b) => (a == null || a === '' || b == null || b === '' ? compare(a, b)  // missing: last, either way
    : state.desc ? compare(b, a) : compare(a, b));
  // A batch without a value of its own sorts where its first trial in this order would.
  const key = r => {
    const v = col.get(r);
    if (v != null || !r.is_batch) return v;
    const vs = (kids.get(r.id) || []).map(col.get).filter(x => x != null && x !== '');
    return vs.length ? vs.sort(order)[0] : null;
  };
  const keys = new Map(list.map(r => [r, key(r)]));
  return list.slice().sort((x, y) => order(keys.get(x), keys.get(y)));
}
function matches(r) {
  return (!state.status || r.status === state.status) && state.filter.every(t => r._hay.includes(t));
}
function visibleRows() {
  const rows = [];
  for (const t of sorted(top)) {
    const own = matches(t);
    const ks = kids.get(t.id) || [];
    const hit = ks.filter(matches);
    if (!own && !hit.length) continue;
    rows.push(t);
    if (t.is_batch && !state.collapsed.has(t.id)) rows.push(...sorted(hit.length ? hit : ks));
  }
  return rows;
}

function renderHead() {
  const tr = el('tr', null, el('th', { title: 'plot scalars' }, ''));
  for (const c of COLUMNS) {
    const arrow = state.sort === c.key ? (state.desc ? ' \u25bc' : ' \u25b2') : '';
    tr.append(el('th', {
      class: c.kind || null, 'data-key': c.key,
      title: c.kind === 'flag' ? 'flag ' + c.title : c.kind === 'scalar' ? 'last value of scalar ' + c.title : null,
      onclick: () => {
        if (state.sort === c.key) state.desc = !state.desc; else { state.sort = c.key; state.desc = false; }
        saveHash();
        renderTable();
      },
    }, c.title, el('span', { class: 'arrow' }, arrow)));
  }
  document.querySelector('#runs thead').replaceChildren(tr);
}

function selectionOf(r) {
  if (!r.is_batch) return state.selected.has(r.id) ? 'all' : 'none';
  const ks = kids.get(r.id) || [];
  const n = ks.filter(t => state.selected.has(t.id)).length;
  return n === 0 ? 'none' : n === ks.length ? 'all' : 'some';
}
function toggleSelect(r, on) {
  for (const x of r.is_batch ? (kids.get(r.id) || []) : [r]) {
    if (on) { state.selected.add(x.id); colorOf(x.id); } else state.selected.delete(x.id);
  }
  saveHash();
  renderTable();
  drawCurves();
}

function renderTable() {
  renderHead();
  const rows = visibleRows();
  const body = [];
  for (const r of rows.slice(0, state.limit)) {
    const sel = selectionOf(r);
    const box = el('input', {
      type: 'checkbox', 'aria-label': 'plot ' + r.id,
      onclick: e => { e.stopPropagation(); toggleSelect(r, e.target.checked); },
    });
    box.checked = sel === 'all';
    box.indeterminate = sel === 'some';
    const first = el('td', null, box, state.selected.has(r.id) ? el('span', { class: 'swatch', style: 'background:' + colorOf(r.id) }) : null);
    const cells = [first];
    for (const c of COLUMNS) {
      let content = c.show ? c.show(r) : fmt(c.get(r));
      if (c.key === 'id' && r.is_batch) {
        const open = !state.collapsed.has(r.id);
        content = [el('span', {
          class: 'toggle', title: open ? 'hide trials' : 'show trials',
          onclick: e => { e.stopPropagation(); if (open) state.collapsed.add(r.id); else state.collapsed.delete(r.id); renderTable(); },
        }, open ? '\u25be' : '\u25b8'), r.id, ` (${r.trials.length} trials)`];
      } else if (c.key === 'id' && r.parent && byId.has(r.parent)) {
        content = ['\u21b3 ', r.id];
      }
      cells.push(el('td', { class: [c.cls, c.num && typeof c.get(r) === 'number' ? 'num' : null].filter(Boolean).join(' ') || null }, content));
    }
    const kind = r.is_batch ? 'batch' : r.parent && byId.has(r.parent) ? 'trial' : 'single';
    body.push(el('tr', {
      class: ['run', kind, r.id === state.current ? 'current' : null].filter(Boolean).join(' '),
      'data-id': r.id, 'data-parent': r.parent || null, onclick: () => openRun(r.id),
    }, cells));
  }
  document.querySelector('#runs tbody').replaceChildren(...body);
  const more = document.getElementById('more');
  more.replaceChildren();
  if (!RUNS.length) more.append('No runs.');
  else if (!rows.length) more.append('No run matches the filter.');
  else if (rows.length > state.limit) {
    more.append(`${state.limit} of ${rows.length} rows shown `,
      el('button', { type: 'button', onclick: () => { state.limit = Infinity; renderTable(); } }, 'show all'));
  }
}

function renderSummary() {
  const batches = RUNS.filter(r => r.is_batch).length;
  const counts = {};
  for (const r of RUNS) if (!r.is_batch) counts[r.status] = (counts[r.status] || 0) + 1;
  const parts = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(', ');
  document.getElementById('summary').textContent =
    `${RUNS.length - batches} runs` + (batches ? `, ${batches} batch${batches > 1 ? 'es' : ''}` : '') + (parts ? ` (${parts})` : '');
  if (D.runs_dir) document.getElementById('summary').title = D.runs_dir;
}

// --- scalar curves of the selected runs, overlaid: one plot per scalar key ---
function purge(box) {
  for (const d of box.querySelectorAll('.js-plotly-plot')) Plotly.purge(d);
  box.replaceChildren();
}
// A run's details (series, output, files, hooks) are in the page when it is a static file; the
// server sends them when first needed.
const fetching = new Map();
function details(r) {
  if (r.series !== undefined) return Promise.resolve(r);
  if (!fetching.has(r.id)) {
    fetching.set(r.id, fetch('run/' + encodeURIComponent(r.id) + '.json', { cache: 'no-store' })
      .then(res => { if (!res.ok) throw new Error(`run ${r.id}: HTTP ${res.status}`); return res.json(); })
      .then(x => { const hay = r._hay; Object.assign(r, x); r._hay = hay; return r; },
            e => { fetching.delete(r.id); throw e; }));
  }
  return fetching.get(r.id);
}

let curvesGen = 0;
async function drawCurves() {
  const gen = ++curvesGen;
  const wanted = [...state.selected].map(id => byId.get(id)).filter(r => r && Object.keys(r.scalars).length);
  const runs = await Promise.all(wanted.map(details));
  if (gen !== curvesGen) return;  // the selection changed meanwhile
  const box = document.getElementById('curves');
  purge(box);
  const note = document.getElementById('curves-note');
  note.textContent = runs.length ? `${runs.length} run${runs.length > 1 ? 's' : ''}` : '';
  if (!runs.length) {
    box.append(el('div', { class: 'empty' }, 'Tick runs in the table to plot their scalars over steps.'));
    return;
  }
  const keys = D.scalar_keys.filter(k => runs.some(r => r.series[k]));
  const logy = document.getElementById('logy').checked;
  const done = [];
  for (const key of keys) {
    const div = el('div', { class: 'plot curve', 'data-key': key });
    box.append(div);
    const traces = runs.filter(r => r.series[key]).map(r => {
      const s = r.series[key];
      return {
        type: 'scatter', mode: s.step.length <= 40 ? 'lines+markers' : 'lines', name: plotText(runName(r)),
        x: s.step, y: s.value, line: { color: colorOf(r.id), width: 1.6 }, marker: { size: 4 },
        customdata: s.step.map(() => r.id), hovertemplate: 'step %{x}: %{y:.5g}<extra>%{fullData.name}</extra>',
      };
    });
    done.push(Plotly.newPlot(div, traces, {
      title: { text: plotText(key), font: { size: 13 }, x: 0.01, xanchor: 'left' },
      height: 250, margin: { l: 55, r: 10, t: 30, b: 36 },
      xaxis: { title: { text: 'step' }, zeroline: false }, yaxis: { type: logy ? 'log' : 'linear', zeroline: false },
      showlegend: true, legend: { font: { size: 10 } }, hovermode: 'closest',
    }, PLOT_CONFIG).then(gd => { gd.on('plotly_click', ev => openRun(ev.points[0].customdata)); }));
  }
  await Promise.all(done);
}

// --- the run panel ---
function kv(rows) {
  return el('table', null, rows.filter(([, v]) => v != null && v !== '' && !(Array.isArray(v) && !v.length))
    .map(([k, v]) => el('tr', null, el('td', { class: 'k' }, k), el('td', null, v))));
}
function fileUrl(r, rel) {
  const enc = rel.split('/').map(encodeURIComponent).join('/');
  if (location.protocol === 'http:' || location.protocol === 'https:') return '/files/' + encodeURIComponent(r.id) + '/' + enc;
  return 'file://' + r.run_dir.split('/').map(encodeURIComponent).join('/') + '/' + enc;
}
function runLink(id) {
  return el('a', { href: '#run=' + encodeURIComponent(id), onclick: e => { e.preventDefault(); openRun(id); } }, id);
}

let panelGen = 0;
async function openRun(id) {
  const gen = ++panelGen;
  let r = byId.get(id);
  const panel = document.getElementById('panel');
  if (!r) { purge(panel); panel.append(el('div', { class: 'empty' }, 'No run ' + id + ' in this view.')); return; }
  state.current = id;
  saveHash();
  for (const tr of document.querySelectorAll('#runs tr.run')) tr.classList.toggle('current', tr.dataset.id === id);
  if (r.series === undefined) { purge(panel); panel.append(el('div', { class: 'empty' }, 'Loading ' + id + '\u2026')); }
  r = await details(r);
  if (gen !== panelGen) return;  // another run was opened meanwhile
  purge(panel);
  const done = [];
  panel.append(el('div', { class: 'section-head' }, el('h2', null, r.is_batch ? 'Batch ' : 'Run ', el('code', null, r.id)), statusBadge(r.status)));
  if (r.is_batch) done.push(...batchSection(panel, r));
  panel.append(kv([
    ['op', r.op], ['label', r.label], ['tags', (r.tags || []).join(' ')],
    ['exit code', r.exit_code == null ? null : String(r.exit_code)],
    ['created', fmtTime(r.created)], ['started', fmtTime(r.started)], ['stopped', fmtTime(r.stopped)],
    ['time', fmtDur(r.time)], ['host', r.host], ['ranks', r.nproc_per_node > 1 ? String(r.nproc_per_node) : null],
    ['gpus', r.gpus && r.gpus.length ? r.gpus.join(',') : null],
    ['batch', r.parent ? runLink(r.parent) : null],
    ['remote', r.remote ? JSON.stringify(r.remote) : null],
    ['command', r.cmd && r.cmd.length ? el('code', null, r.cmd.join(' ')) : null],
    ['run dir', el('code', null, r.run_dir)],
  ]));
  if (r.error) {
    const where = r.error.plugin ? `${r.error.plugin}.${r.error.hook}: ` : '';
    panel.append(el('h3', null, 'Error'),
      el('pre', { class: 'err' }, r.error.message ? where + r.error.message : JSON.stringify(r.error, null, 2)));
  }
  const flags = Object.entries(r.flags || {});
  if (flags.length) panel.append(el('h3', null, 'Flags'), kv(flags.map(([k, v]) => [k, fmt(v)])));
  const sc = Object.entries(r.scalars || {});
  if (sc.length) {
    panel.append(el('h3', null, 'Scalars'), el('table', null,
      el('tr', null, ['key', 'last', 'min', 'max', 'step', 'count'].map(h => el('td', { class: 'k' }, h))),
      sc.map(([k, s]) => el('tr', null, [k, fmt(s.last), fmt(s.min), fmt(s.max), fmt(s.step), fmt(s.count)].map(v => el('td', null, v))))));
  }
  if (r.plugins && r.plugins.length) {
    panel.append(el('h3', null, 'Hooks'), el('table', { class: 'hooks' },
      el('tr', null, ['hook', 'plugin', 'priority', 'ms', ''].map(h => el('td', { class: 'k' }, h))),
      r.plugins.map(t => el('tr', null, el('td', null, t.hook), el('td', null, t.plugin), el('td', null, fmt(t.priority)),
        el('td', null, t.seconds == null ? '' : (t.seconds * 1000).toFixed(1)), el('td', null, t.error ? 'ERROR ' + fmt(t.error) : '')))));
  }
  if (!r.is_batch || r.output) {
    const note = r.output_size > r.output.length + 1 ? ` (tail; ${fmtSize(r.output_size)} in all)` : '';
    panel.append(el('h3', null, 'Output', el('span', { class: 'note' }, note), ' ',
      r.output_size ? el('a', { href: fileUrl(r, 'output.log'), target: '_blank' }, 'output.log') : null),
      el('pre', { class: 'output' }, r.output || '(no output)'));
  }
  const shown = r.files_total > r.files.length ? ` (${r.files.length} of ${r.files_total})` : '';
  panel.append(el('h3', null, 'Files', el('span', { class: 'note' }, shown)),
    el('table', { class: 'files' }, r.files.map(([p, n]) => el('tr', null,
      el('td', null, el('a', { href: fileUrl(r, p), target: '_blank' }, p)), el('td', { class: 'num' }, fmtSize(n))))));
  await Promise.all(done);
}

// --- a batch: final metric against each flag that varies across trials ---
function plotOnly(runs) {
  state.selected = new Set(runs.map(t => t.id));
  runs.forEach(t => colorOf(t.id));
  saveHash();
  renderTable();
  drawCurves();
}
function batchSection(panel, b) {
  const trials = kids.get(b.id) || [];
  const counts = {};
  for (const t of trials) counts[t.status] = (counts[t.status] || 0) + 1;
  panel.append(el('h3', null, `Trials (${trials.length})`),
    el('div', { class: 'controls' }, Object.entries(counts).map(([s, n]) => [statusBadge(s), ' ' + n]),
      trials.length ? el('button', { type: 'button', onclick: () => plotOnly(trials) }, 'plot their curves') : null));
  const keys = D.scalar_keys.filter(k => trials.some(t => t.scalars[k]));
  if (!keys.length) { panel.append(el('div', { class: 'empty' }, 'No trial has scalars yet.')); return []; }
  const metric = el('select', { 'aria-label': 'metric' }, keys.map(k => el('option', { value: k }, k)));
  const want = hash.get('metric');
  metric.value = keys.includes(want) ? want : keys.includes('loss') ? 'loss' : keys[0];
  const mode = el('select', { 'aria-label': 'plot' },
    el('option', { value: 'scatter' }, 'scatter per flag'), el('option', { value: 'parcoords' }, 'parallel coordinates'));
  if (hash.get('plot') === 'parcoords') mode.value = 'parcoords';
  const div = el('div', { class: 'plot batch-plot' });
  panel.append(el('div', { class: 'controls' }, 'final', metric, 'by flag:', mode), div);
  const redraw = () => { Plotly.purge(div); return drawBatch(div, trials, metric.value, mode.value); };
  metric.addEventListener('change', redraw);
  mode.addEventListener('change', redraw);
  return [redraw()];
}

function drawBatch(div, trials, metric, mode) {
  const ts = trials.filter(t => t.scalars[metric] && t.scalars[metric].last != null);
  const names = [...new Set(ts.flatMap(t => Object.keys(t.flags)))];
  let varying = names.filter(n => new Set(ts.map(t => JSON.stringify(t.flags[n]))).size > 1);
  if (!varying.length) varying = names;
  varying = varying.slice(0, 8);
  const y = ts.map(t => t.scalars[metric].last);
  const ids = ts.map(t => t.id);
  const numeric = n => ts.every(t => typeof t.flags[n] === 'number');
  if (!ts.length || !varying.length) { div.append(el('div', { class: 'empty' }, 'Nothing to plot.')); return Promise.resolve(); }
  if (mode === 'parcoords') {
    const dims = varying.map(n => {
      if (numeric(n)) return { label: plotText(n), values: ts.map(t => t.flags[n]) };
      const cats = [...new Set(ts.map(t => fmt(t.flags[n])))].sort();
      return {
        label: plotText(n), values: ts.map(t => cats.indexOf(fmt(t.flags[n]))),
        tickvals: cats.map((_, i) => i), ticktext: cats.map(plotText),
      };
    });
    dims.push({ label: plotText(metric), values: y });
    const line = { color: y, colorscale: 'Viridis', showscale: true, colorbar: { thickness: 12 } };
    return Plotly.newPlot(div, [{ type: 'parcoords', dimensions: dims, line }],
      { height: 300, margin: { l: 50, r: 70, t: 40, b: 20 } }, PLOT_CONFIG);
  }
  const cols = Math.min(varying.length, 2), rows = Math.ceil(varying.length / cols);
  const traces = [], layout = {
    height: 70 + rows * 190, margin: { l: 55, r: 10, t: 20, b: 40 }, showlegend: false, hovermode: 'closest',
    grid: { rows, columns: cols, pattern: 'independent', ygap: 0.35, xgap: 0.15 },
  };
  varying.forEach((n, i) => {
    const ax = i ? String(i + 1) : '';
    // A numeric flag with many values gets a numeric axis (log when it spans decades), with few
    // values (a grid) a category axis in numeric order; other flags a category axis.
    const values = [...new Set(ts.map(t => t.flags[n]))];
    const num = numeric(n) && values.length > 8;
    const order = numeric(n) ? values.sort((a, b) => a - b).map(fmt) : values.map(fmt).sort();
    const xs = ts.map(t => (num ? t.flags[n] : fmt(t.flags[n])));
    const logx = num && xs.every(v => v > 0) && Math.max(...xs) / Math.min(...xs) >= 100;
    traces.push({
      type: 'scatter', mode: 'markers', x: xs, y, xaxis: 'x' + ax, yaxis: 'y' + ax, customdata: ids,
      marker: { size: 9, color: y, colorscale: 'Viridis', line: { width: 0.5, color: '#333' } },
      hovertemplate: plotText(n) + ' %{x}<br>' + plotText(metric) + ' %{y:.5g}<extra>%{customdata}</extra>',
    });
    layout['xaxis' + ax] = num ? { title: { text: plotText(n) }, type: logx ? 'log' : 'linear' }
      : { title: { text: plotText(n) }, type: 'category', categoryorder: 'array', categoryarray: order.map(plotText),
          range: [-0.5, order.length - 0.5] };
    layout['yaxis' + ax] = { title: { text: i % cols === 0 ? plotText(metric) : '' } };
  });
  return Plotly.newPlot(div, traces, layout, PLOT_CONFIG).then(gd => { gd.on('plotly_click', ev => openRun(ev.points[0].customdata)); });
}

// --- wiring ---
function setFilter(text) { state.filter = text.toLowerCase().split(/\s+/).filter(Boolean); }
document.getElementById('filter').addEventListener('input', e => { setFilter(e.target.value); saveHash(); renderTable(); });
document.getElementById('status-filter').addEventListener('change', e => {
  state.status = e.target.value;
  saveHash();
  renderTable();
});
document.getElementById('logy').addEventListener('change', drawCurves);
document.getElementById('clear-sel').addEventListener('click', () => { state.selected.clear(); saveHash(); renderTable(); drawCurves(); });

if (RUNS.length > 500) for (const r of RUNS) if (r.is_batch) state.collapsed.add(r.id);
const wantSort = (hash.get('sort') || '').replace(/^-/, '');
if (COLUMNS.some(c => c.key === wantSort)) { state.sort = wantSort; state.desc = hash.get('sort').startsWith('-'); }
if (hash.get('q')) { document.getElementById('filter').value = hash.get('q'); setFilter(hash.get('q')); }
if (hash.get('status')) { state.status = hash.get('status'); document.getElementById('status-filter').value = state.status; }
const wantRun = hash.get('run');
const wantSel = (hash.get('sel') || '').split(',').filter(id => byId.has(id));
if (wantSel.length) wantSel.forEach(id => state.selected.add(id));
else if (wantRun && byId.has(wantRun) && byId.get(wantRun).is_batch) (kids.get(wantRun) || []).forEach(t => state.selected.add(t.id));
else RUNS.filter(r => !r.is_batch && Object.keys(r.scalars).length).slice(0, 5).forEach(r => state.selected.add(r.id));
state.selected.forEach(colorOf);
renderSummary();
renderTable();
const pending = [drawCurves()];
if (wantRun) pending.push(openRun(wantRun));
Promise.all(pending).then(() => { document.body.dataset.ready = '1'; },
  e => { reportError(e && e.message || e); document.body.dataset.ready = 'error'; });
})();
"""
