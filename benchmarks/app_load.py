"""Load test of the running Gradio demo: N concurrent clients, bounded requests.

Starts ``python app.py`` itself (and times the cold start: process start to
first result) unless ``--url`` points at an app that is already running. Then
it measures a single client's latency, and the latency and errors of
``--clients`` clients sending ``--requests`` requests in total, as fast as
each gets its answers. Every request is the same: a ``--seconds`` recording
and ``--faces`` photos with one face each. The recording is uploaded with
every request; the photos once per client, as the page does (see
``HttpClient``; ``--reupload-photos`` sends them every time, as gradio_client
does). Latency is the time until the result arrives; the gallery's images
are fetched only with ``--download`` (the two figures come inline, as SVG),
since on a small machine the clients' own work competes with the server they
measure. Prints a table, then one JSON line.

    python benchmarks/app_load.py --clients 4 --requests 40 --weights random

Targets: 4 clients, 0 errors, p95 <= 2.2 x single-client p50; app_overhead_ratio <= 1.25.

Clients (``--client``): ``http`` (default) sends requests the way a page
does, over one kept-alive connection, and reads the result from the event
stream when it arrives (Gradio's documented HTTP API, see ``HttpClient``);
``gradio_client`` uses the Python client library, which opens a connection
per upload and looks for the result every 50 ms. The single-client phase
times both, alternating, and reports the other one's p50 and ratio too.

The app's own overhead: the same pipeline is built in this process (same
checkpoint, weights, torch threads and allocator setting as the app) and called
directly on the same recording and photos, one call after each pair of
single-client requests; ``pipeline_p50_s`` is its p50 and
``app_overhead_ratio`` = single-client p50 / pipeline_p50_s (upload,
queue, drawing and sending the result). As in the app, the photos
are in the face cache after the first call. ``stream_update_p50_s`` is the
server's time for one live-microphone update (``app.live_update`` on 0.5 s
chunks of the same recording, photos cached: voice encoder, fusion, drawing);
the browser's transport and rendering are not in it.

What the load phase is up against: after it, the app's handler (pipeline +
drawing, no HTTP or queue) runs on ``--concurrency`` threads at once in this
process; ``handler_throughput_rps`` is its rate, and
``closed_loop_floor_ratio`` = (clients / that rate) / single-client p50, the
mean latency ratio the load phase would show if serving cost nothing and every
request took the same time (its p95 can only be higher).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from pipeline_latency import make_photos, make_speech  # noqa: E402  (same media as the pipeline benchmark)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DOWNLOAD = False  # set by --download
CLIENT = "http"  # set by --client
REUPLOAD_PHOTOS = False  # set by --reupload-photos
P95_TARGET = 2.2  # 4 clients' p95 over the single client's p50


def make_client(url: str, downloads: Path, kind: Optional[str] = None):
    """A ``--client`` client (``HttpClient`` or gradio_client's) that fetches the output images only with --download.

    For gradio_client's client and a plain-HTTP URL (the local app) certificate verification is off: it cannot apply without
    TLS, and with it on gradio_client builds a verifying SSL context (loading the CA bundle, ~25 ms
    of client CPU, measured with py-spy) for each of a request's three uploads and its two queue
    calls. That is the measuring tool's cost, not the app's (a browser keeps its connections), and on
    a 2-core machine it was ~0.13 s of every request's latency.
    """
    if (kind or CLIENT) == "http":
        return HttpClient(url, downloads if DOWNLOAD else None, reupload_photos=REUPLOAD_PHOTOS)
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, httpx_kwargs={"timeout": 120},
                  download_files=str(downloads) if DOWNLOAD else False, ssl_verify=not url.startswith("http://"))


class HttpClient:
    """A client that talks to the app the way a page does: one kept-alive connection, no polling.

    Each request uploads its recording (``/gradio_api/upload``), starts the
    match (``POST /gradio_api/call/match``) and reads the result from the event
    stream as soon as the server sends it (``GET /gradio_api/call/match/ID``),
    Gradio's documented HTTP API. Photos are uploaded once and then referred to
    by their server path, as the page does (it uploads a photo when it is added,
    and every press of the button sends the same reference); with
    ``reupload_photos`` they are uploaded again for every request. Every request
    carries the client's session id, as the page's do (one per open page): a
    request without one makes Gradio build a new session state from the whole
    page's configuration (every component of both tabs), 3-10 ms of server time
    per request measured side by side, which a page pays once.
    gradio_client (``--client gradio_client``) does the same work but opens a new connection for every upload and checks
    for the finished result every 50 ms (``time.sleep(0.05)`` in its SSE
    reader), which adds 0-50 ms to each request that the app is not
    responsible for; a browser reacts to the event when it arrives.
    """

    def __init__(self, url: str, downloads: Optional[Path] = None, reupload_photos: bool = False) -> None:
        import httpx

        self.http = httpx.Client(base_url=url.rstrip("/") + "/gradio_api", timeout=120)
        self.downloads = downloads  # also fetch the gallery's images, as the page does (--download)
        self.reupload_photos = reupload_photos
        self.photos: dict[Path, dict[str, Any]] = {}  # photo -> its file reference on the server
        self.session_hash = uuid.uuid4().hex  # one session per client, as one open page

    def photo(self, path: Path) -> dict[str, Any]:
        if self.reupload_photos or path not in self.photos:
            self.photos[path] = self.upload(path)
        return self.photos[path]

    def upload(self, path: Path) -> dict[str, Any]:
        with open(path, "rb") as f:
            r = self.http.post("/upload", files=[("files", (path.name, f))])
        r.raise_for_status()
        return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}

    def match(self, voice: Path, photos: list[Path]) -> list[Any]:
        data = [self.upload(voice), [self.photo(p) for p in photos], None]
        r = self.http.post("/call/match", json={"data": data, "session_hash": self.session_hash})
        r.raise_for_status()
        event = None
        with self.http.stream("GET", f"/call/match/{r.json()['event_id']}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = json.loads(line[5:])
                    if event == "error":
                        raise RuntimeError(f"the app answered with an error: {payload}")
                    if self.downloads is not None:
                        for item in payload[2] or []:
                            self.http.get(item["image"]["url"]).raise_for_status()
                    return payload
        raise RuntimeError("the event stream ended without a result")


def one_request(client, voice: Path, photos: list[Path]) -> tuple[float, Optional[str]]:
    """Seconds for one /match call, and an error text (None when the page shows a result)."""
    from gradio_client import handle_file

    t = time.perf_counter()
    try:
        if isinstance(client, HttpClient):
            out = client.match(voice, photos)
        else:
            out = client.predict(handle_file(str(voice)), [handle_file(str(p)) for p in photos], None,
                                 api_name="/match")
        summary = out[-1]
        error = None if summary.get("ok") and not summary.get("errors") else "; ".join(summary.get("errors", ["not ok"]))
    except Exception as exc:  # counted as an error, the run goes on
        error = f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - t, error


def start_app(args: argparse.Namespace, log_path: Path) -> tuple[subprocess.Popen, str, float, Any]:
    """Start app.py, wait until it answers, time the first result: (process, url, cold start s, client)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    cmd = [sys.executable, str(ROOT / "app.py"), "--checkpoint", args.checkpoint, "--weights", args.weights,
           "--host", "127.0.0.1", "--port", str(port), "--concurrency", str(args.concurrency),
           "--threads", str(args.threads)]
    # Gradio's own per-request phase timers (a few perf_counter calls), read back by server_phases()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", GRADIO_PROFILING="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    import httpx

    client = None
    while client is None:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        if time.perf_counter() - t0 > args.start_timeout:
            proc.kill()
            raise SystemExit(f"app.py did not answer within {args.start_timeout} s:\n{log_path.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=5).raise_for_status()
            client = make_client(url, args.work / "downloads")
        except Exception:
            time.sleep(0.2)
    return proc, url, t0, client


class InProcessPipeline:
    """The app's pipeline built in this process with the app's settings, to time it alone.

    Its calls are interleaved with the single-client requests, so that both see the same machine.
    """

    def __init__(self, args: argparse.Namespace, voice: Path, photos: list[Path]) -> None:
        import torch

        sys.path.insert(0, str(ROOT))
        import app as demo_app
        from faa_core.allocator import keep_freed_memory

        keep_freed_memory()  # as app.main does
        torch.set_num_threads(demo_app.torch_threads(args.threads, args.concurrency))
        self.app = demo_app
        self.pipeline, _ = demo_app.load_models(args.checkpoint, args.weights, "cpu")
        self.voice, self.paths, self.names = voice, [str(p) for p in photos], [p.name for p in photos]
        self.call()  # photos into the face cache, as in the app

    def call(self) -> float:
        """Seconds for one pipeline call on the recording and the (cached) photos."""
        from faa_core.media import load_audio

        t = time.perf_counter()
        self.pipeline(load_audio(str(self.voice)), self.paths, names=self.names, strict=False)
        return time.perf_counter() - t

    def handler_throughput(self, workers: int, calls: int) -> float:
        """Requests per second of the app's handler (pipeline + drawing, no serving) on ``workers`` threads at once.

        The most any server on this machine could answer with the app's
        concurrency: ``clients`` / this is the mean latency of clients that
        send their next request as soon as they get an answer, were the
        serving (HTTP, queue, files) free.
        """
        barrier = threading.Barrier(workers)

        def work() -> None:
            barrier.wait()
            for _ in range(calls):
                self.app.run_match(self.pipeline, str(self.voice), self.paths, None)

        threads = [threading.Thread(target=work) for _ in range(workers)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return workers * calls / (time.perf_counter() - t)

    def live_updates(self, rounds: int) -> list[float]:
        """Seconds of each ranking update when the recording is streamed in 0.5 s chunks, ``rounds`` times."""
        import soundfile as sf

        x, rate = sf.read(self.voice, dtype="int16")
        step = rate // 2
        updates = []
        for _ in range(rounds):
            live = None
            for i in range(0, len(x), step):
                t = time.perf_counter()
                view, live = self.app.live_update(self.pipeline, live, (rate, x[i:i + step]), self.paths, None)
                if view is not None:
                    updates.append(time.perf_counter() - t)
        return updates


def server_phases(url: str, clear: bool = False) -> dict[str, float]:
    """p50 ms of the server's phases per /match request (Gradio's profiler, on when this script starts the
    app): queue wait, preprocess (uploaded files into the cache), the handler (pipeline + drawing),
    postprocess (encoding the output images), and one upload. Empty when the app does not profile."""
    import httpx

    base = url.rstrip("/") + "/gradio_api/profiling"
    try:
        if clear:
            httpx.post(base + "/clear", timeout=10)
            return {}
        summary = httpx.get(base + "/summary", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return {}
    phases = summary.get("phases") or {}
    out = {k: float(phases[k]["p50"]) for k in ("queue_wait", "preprocess", "fn_call", "postprocess", "total")
           if k in phases}
    if "upload" in summary:
        out["upload"] = float(summary["upload"]["p50"])
    return out


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50_s": float("nan"), "p95_s": float("nan"), "max_s": float("nan")}
    a = np.asarray(values)
    return {"p50_s": float(np.percentile(a, 50)), "p95_s": float(np.percentile(a, 95)), "max_s": float(a.max())}


def run_clients(url: str, n_clients: int, n_requests: int, voice: Path, photos: list[Path], work: Path) -> tuple[list[float], list[str], float]:
    """``n_clients`` threads, each with its own client, share ``n_requests`` requests."""
    clients = [make_client(url, work / f"downloads{i}") for i in range(n_clients)]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    remaining = [n_requests]
    start = threading.Barrier(n_clients)

    def worker(client) -> None:
        start.wait()
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            seconds, error = one_request(client, voice, photos)
            with lock:
                latencies.append(seconds)
                if error:
                    errors.append(error)

    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return latencies, errors, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="an app that is already running (no cold start measured)")
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "faa-realdims-synthetic"))
    parser.add_argument("--weights", default="random", help="passed to app.py (random: same cost, nothing to download)")
    parser.add_argument("--concurrency", type=int, default=2, help="passed to app.py --concurrency")
    parser.add_argument("--threads", type=int, default=0, help="passed to app.py --threads (0: its default)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="total requests of the concurrent phase")
    parser.add_argument("--single", type=int, default=10, help="requests of the single-client phase")
    parser.add_argument("--faces", type=int, default=2, help="photos per request (one face each)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the recording")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--pipeline-repeats", type=int, default=10,
                        help="direct pipeline calls for pipeline_p50_s, interleaved with the single-client requests "
                             "(0: skip the in-process measurements)")
    parser.add_argument("--download", action="store_true",
                        help="also fetch the gallery's images of every result, as a browser would (the two figures "
                             "are inline SVG)")
    parser.add_argument("--client", choices=("http", "gradio_client"), default="http",
                        help="how requests are sent: http (one kept-alive connection, result read from the event "
                             "stream as it arrives, like a page) or gradio_client (see HttpClient); the single-client "
                             "phase also times the other one, alternating")
    parser.add_argument("--reupload-photos", action="store_true",
                        help="http client: upload the photos again for every request (gradio_client always does)")
    args = parser.parse_args()
    global DOWNLOAD, CLIENT, REUPLOAD_PHOTOS
    DOWNLOAD, CLIENT, REUPLOAD_PHOTOS = args.download, args.client, args.reupload_photos
    args.work = Path(tempfile.mkdtemp(prefix="faa-app-load-"))

    voice = args.work / "voice.wav"
    speech_kind = make_speech(voice, args.seconds)
    photos, photo_kind = make_photos(args.faces, args.work)

    proc = None
    cold_start = None
    phases: dict[str, float] = {}
    try:
        if args.url:
            url, client = args.url, make_client(args.url, args.work / "downloads")
            one_request(client, voice, photos)
        else:
            proc, url, t0, client = start_app(args, args.work / "app.log")
            _, error = one_request(client, voice, photos)
            cold_start = time.perf_counter() - t0
            if error:
                raise SystemExit(f"first request failed: {error}")
        other_kind = "gradio_client" if args.client == "http" else "http"
        other = make_client(url, args.work / "downloads_other", other_kind)
        one_request(client, voice, photos), one_request(other, voice, photos)  # warm
        in_process = InProcessPipeline(args, voice, photos) if args.pipeline_repeats else None
        server_phases(url, clear=True)
        single, single_other, pipeline_times = [], [], []
        for i in range(max(args.single, args.pipeline_repeats)):  # alternating: all see the same machine
            if i < args.single:
                single.append(one_request(client, voice, photos))
                single_other.append(one_request(other, voice, photos))
            if in_process is not None and i < args.pipeline_repeats:
                pipeline_times.append(in_process.call())
        phases = server_phases(url)
        single_lat = [s for s, _ in single]
        single_err = [e for _, e in single + single_other if e]
        other_p50 = float(np.percentile([s for s, _ in single_other], 50))
        lat, errors, wall = run_clients(url, args.clients, args.requests, voice, photos, args.work)
        inproc = {}
        if in_process is not None:
            updates = in_process.live_updates(max(1, args.pipeline_repeats // 5))
            inproc = {
                "handler_throughput_rps": in_process.handler_throughput(args.concurrency, args.pipeline_repeats),
                "pipeline_p50_s": float(np.percentile(pipeline_times, 50)),
                "stream_update_p50_s": float(np.percentile(updates, 50)) if updates else float("nan"),
                "stream_update_p95_s": float(np.percentile(updates, 95)) if updates else float("nan"),
                "stream_updates": len(updates),
            }
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(args.work, ignore_errors=True)

    s, c = percentiles(single_lat), percentiles(lat)
    reupload = bool(args.reupload_photos or args.client == "gradio_client")  # gradio_client always uploads
    print(f"media: {args.seconds:.0f} s {speech_kind}, {args.faces} photos ({photo_kind}); "
          f"app concurrency {args.concurrency if not args.url else '?'}; weights {args.weights}")
    print(f"{'phase':>10} {'clients':>7} {'requests':>8} {'errors':>6} {'p50 s':>8} {'p95 s':>8} {'max s':>8} {'req/s':>7}")
    print(f"{'single':>10} {1:>7} {len(single_lat):>8} {len(single_err):>6} {s['p50_s']:>8.3f} {s['p95_s']:>8.3f} "
          f"{s['max_s']:>8.3f} {len(single_lat) / max(sum(single_lat), 1e-9):>7.2f}")
    print(f"{'concurrent':>10} {args.clients:>7} {len(lat):>8} {len(errors):>6} {c['p50_s']:>8.3f} {c['p95_s']:>8.3f} "
          f"{c['max_s']:>8.3f} {len(lat) / max(wall, 1e-9):>7.2f}")
    if cold_start is not None:
        print(f"cold start (process start -> first result): {cold_start:.2f} s")
    for e in sorted(set(errors + single_err))[:5]:
        print(f"error: {e}")
    ratio = c["p95_s"] / s["p50_s"]
    overhead = s["p50_s"] / inproc["pipeline_p50_s"] if inproc else float("nan")
    if inproc:
        print(f"pipeline alone p50 {inproc['pipeline_p50_s']:.3f} s -> app overhead ratio {overhead:.2f} "
              f"(target <= 1.25; with the {other_kind} client, alternating: single p50 {other_p50:.3f} s, ratio "
              f"{other_p50 / inproc['pipeline_p50_s']:.2f}); live-microphone update p50 {inproc['stream_update_p50_s']:.3f} s "
              f"(p95 {inproc['stream_update_p95_s']:.3f} s, {inproc['stream_updates']} updates; target p50 <= 0.5 s)")
    floor = args.clients / inproc["handler_throughput_rps"] / s["p50_s"] if inproc else float("nan")
    if inproc:
        print(f"the handler alone (pipeline + drawing, no serving) on {args.concurrency} threads at once: "
              f"{inproc['handler_throughput_rps']:.2f} req/s, so {args.clients} clients wait at least "
              f"{args.clients / inproc['handler_throughput_rps']:.3f} s on average = {floor:.2f} x the single p50")
    if phases:
        uploads = phases.get("upload", 0.0) * (1 + (args.faces if reupload else 0))  # the recording (and photos)
        server_ms = phases.get("total", 0.0) + phases.get("queue_wait", 0.0) + uploads
        print("single client, server side p50 ms: " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items())
              + f"; the rest of the single p50 ({s['p50_s'] * 1000 - server_ms:.0f} ms) is HTTP, the event stream "
              "and the client")
    print(f"p95 / single p50 = {ratio:.2f} (target <= {P95_TARGET}), errors {len(errors)} (target 0)")
    print(json.dumps({
        "client": args.client,
        "reupload_photos": reupload,
        "clients": args.clients,
        "requests": len(lat),
        "errors": len(errors),
        "p50_s": round(c["p50_s"], 4),
        "p95_s": round(c["p95_s"], 4),
        "max_s": round(c["max_s"], 4),
        "throughput_rps": round(len(lat) / max(wall, 1e-9), 3),
        "single_p50_s": round(s["p50_s"], 4),
        "single_p95_s": round(s["p95_s"], 4),
        "single_errors": len(single_err),
        "other_client": other_kind,
        "single_p50_other_client_s": round(other_p50, 4),
        "p95_over_single_p50": round(ratio, 3),
        "target_met": bool(len(errors) == 0 and ratio <= P95_TARGET),
        "cold_start_s": None if cold_start is None else round(cold_start, 3),
        "app_concurrency": None if args.url else args.concurrency,
        "weights": args.weights,
        "faces": args.faces,
        "audio_s": args.seconds,
        "downloads": DOWNLOAD,
        "pipeline_p50_s": round(inproc["pipeline_p50_s"], 4) if inproc else None,
        "app_overhead_ratio": round(overhead, 3) if inproc else None,
        "app_overhead_ratio_other_client": round(other_p50 / inproc["pipeline_p50_s"], 3) if inproc else None,
        "stream_update_p50_s": round(inproc["stream_update_p50_s"], 4) if inproc else None,
        "stream_update_p95_s": round(inproc["stream_update_p95_s"], 4) if inproc else None,
        "handler_throughput_rps": round(inproc["handler_throughput_rps"], 3) if inproc else None,
        "closed_loop_floor_ratio": round(floor, 3) if inproc else None,
        "server_phases_p50_ms": {k: round(v, 2) for k, v in phases.items()},
    }))


if __name__ == "__main__":
    main()
