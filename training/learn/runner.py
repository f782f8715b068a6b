"""The background side of a Learn run: one training at a time, streamed round by round, stoppable.

:class:`LearnRunner` starts ``training.learn.worker`` as a child process
(its own session, so a Stop ends it and anything it started), follows the
files it writes (``status.json``, ``start.json``, the Trainer's
``metrics.jsonl``, ``result.json``) and yields a :class:`Progress` snapshot
whenever something new is there. It enforces the limits of
``training/configs/learn.yaml``: wall-clock time, resident memory and disk
of a run; only the last few run folders are kept.

One runner per server: its lock lets one training run at a time whoever
calls (the page, the API, a notebook); the page's queue adds the waiting
line in front of it.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from training.learn.choices import LearnJob, settings

REPO_ROOT = Path(__file__).resolve().parents[2]
FINISHED = ("done", "stopped", "failed")
_COUNTER = itertools.count()


def default_root() -> Path:
    """Where runs and worlds live: $FAA_LEARN_DIR, else a folder in the system's temp dir."""
    env = os.environ.get("FAA_LEARN_DIR")
    return Path(env) if env else Path(tempfile.gettempdir()) / f"faa-learn-{os.getuid() if hasattr(os, 'getuid') else 0}"


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc; 0 where unknown)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _disk_mb(folder: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total / 2**20


@dataclass
class Progress:
    """What is known about a run at one moment (the page draws it; the API returns it)."""

    job: LearnJob
    phase: str  # waiting | world | setup | training | evaluating | done | stopped | failed
    elapsed: float = 0.0
    rounds: list[dict[str, Any]] = field(default_factory=list)
    start: Optional[dict[str, Any]] = None
    result: Optional[dict[str, Any]] = None
    message: str = ""
    run_dir: Optional[Path] = None

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def max_rounds(self) -> int:
        return int((self.start or {}).get("max_rounds") or self.job.config()["schedule"]["max_rounds"])

    def summary(self) -> dict[str, Any]:
        """The run as JSON: the API's last output (the final one has the test numbers)."""
        r = self.result or {}
        s = self.start or {}
        best = max((row["val_auc"] for row in self.rounds), default=None)
        out: dict[str, Any] = {
            "world": self.job.world, "method": self.job.method, "switches_off": list(self.job.switches_off),
            "seed": self.job.seed, "phase": self.phase,
            "rounds": r.get("rounds", len(self.rounds)),
            "seconds": r.get("seconds", round(self.elapsed, 1)),
            "val_auc": r.get("val_auc", best),
            "untrained_val_auc": s.get("untrained_val_auc"),
            "oracle_val_auc": s.get("oracle_val_auc"),
            "test": r.get("test", {}),
            "oracle_test": r.get("oracle_test", {}),
        }
        if s.get("probe") is not None:
            out["probe"] = s["probe"]
        if self.rounds:
            last = self.rounds[-1]
            out["last_round"] = {k: last[k] for k in ("round", "loss", "clusters", "purity", "val_auc") if k in last}
        if self.job.notes:
            out["notes"] = list(self.job.notes)
        if self.message:
            out["message"] = self.message
        if self.phase == "failed":
            out["error"] = self.message
        return out


def _worker_env(threads: int) -> dict[str, str]:
    t = str(max(1, int(threads)))
    return {**os.environ, "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}


def start_spare(limits: dict[str, Any]) -> subprocess.Popen:
    """A worker that imports everything now and waits on stdin for its job (see worker --spare)."""
    return subprocess.Popen(
        [sys.executable, "-m", "training.learn.worker", "--spare"], cwd=str(REPO_ROOT), env=_worker_env(limits["threads"]),
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def _end(proc: subprocess.Popen) -> None:
    """Terminate a worker's whole session (SIGTERM, then SIGKILL after 5 s)."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


class LiveRun:
    """One training process and the folder it writes."""

    def __init__(self, job: LearnJob, run_dir: Path, worlds_root: Path, limits: dict[str, Any],
                 spare: Optional[subprocess.Popen] = None) -> None:
        self.job, self.run_dir, self.worlds_root, self.limits = job, run_dir, worlds_root, limits
        self.t0 = time.perf_counter()
        self.stop_reason: Optional[str] = None
        self._rows: list[dict[str, Any]] = []
        self._log_pos = 0
        self._log = None
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "job.json").write_text(json.dumps(job.to_dict(), indent=1))
        args = [str(run_dir / "job.json"), str(run_dir), str(worlds_root)]
        if spare is not None and spare.poll() is None and spare.stdin is not None:
            try:  # a preloaded worker takes the job
                spare.stdin.write((json.dumps(args) + "\n").encode())
                spare.stdin.close()
                self.proc = spare
                return
            except OSError:
                _end(spare)
        self._log = open(run_dir / "log.txt", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "training.learn.worker", *args], cwd=str(REPO_ROOT), env=_worker_env(limits["threads"]),
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, reason: str = "stopped on request") -> None:
        """End the training process (and anything it started); a no-op once it has ended."""
        if self.stop_reason is None:
            self.stop_reason = reason
        _end(self.proc)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _new_rows(self) -> None:
        path = self.run_dir / "train" / "metrics.jsonl"
        try:
            with open(path, "rb") as fh:
                fh.seek(self._log_pos)
                data = fh.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        for line in data[:end].splitlines():
            if line.strip():
                self._rows.append(json.loads(line))
        self._log_pos += end

    def _check_limits(self) -> None:
        lim = self.limits
        if time.perf_counter() - self.t0 > float(lim["max_seconds"]):
            self.stop(f"stopped: the run took longer than the {lim['max_seconds']} s limit")
        elif _rss_mb(self.proc.pid) > float(lim["max_memory_mb"]):
            self.stop(f"stopped: the training used more than {lim['max_memory_mb']} MB of memory")
        elif _disk_mb(self.run_dir) > float(lim["max_disk_mb"]):
            self.stop(f"stopped: the run folder grew over {lim['max_disk_mb']} MB")

    def poll(self) -> Progress:
        """The run's state now (checks the limits first)."""
        if self.alive and self.stop_reason is None:
            self._check_limits()
        self._new_rows()
        status = _read_json(self.run_dir / "status.json") or {"phase": "setup"}
        start = _read_json(self.run_dir / "start.json")
        p = Progress(self.job, status.get("phase", "setup"), time.perf_counter() - self.t0, list(self._rows), start,
                     run_dir=self.run_dir)
        if status.get("phase") == "done":
            p.result = _read_json(self.run_dir / "result.json")
            if not self.alive:
                self._close_log()
        elif self.stop_reason is not None:
            p.phase, p.message = "stopped", self.stop_reason
        elif status.get("phase") == "failed":
            p.message = f"the training failed: {status.get('error')}"
        elif not self.alive:
            p.phase = "failed"
            p.message = f"the training process ended unexpectedly (exit code {self.proc.returncode}; see {self.run_dir / 'log.txt'})"
        if p.phase == "done" and p.result is None:  # status says done but result.json is unreadable
            p.phase, p.message = "failed", "the training finished but its result could not be read"
        return p


class LearnRunner:
    """One training at a time per server, streamed; Stop by visitor session; old runs cleaned up."""

    def __init__(self, root: str | os.PathLike[str] | None = None, limits: Optional[dict[str, Any]] = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.limits = {**settings()["limits"], **(limits or {})}
        self.runs_root = self.root / "runs"
        self.worlds_root = self.root / "worlds"
        self._lock = threading.Lock()
        self._guard = threading.Lock()
        self._active: dict[str, LiveRun] = {}
        self._spare: Optional[subprocess.Popen] = None
        self._history: "collections.OrderedDict[str, collections.deque]" = collections.OrderedDict()

    # -- state shared with the page --------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def history(self, session: str) -> list[dict[str, Any]]:
        """This visitor's last finished runs (oldest first): the overlay's material."""
        with self._guard:
            return list(self._history.get(session, []))

    def _remember(self, session: str, result: dict[str, Any]) -> None:
        keep = {k: result[k] for k in ("world", "method", "switches_off", "seed", "val_auc", "oracle_val_auc",
                                       "untrained_val_auc", "metrics", "test") if k in result}
        keep["label"] = LearnJob.from_dict({k: result[k] for k in ("world", "method", "switches_off", "seed", "configs", "overrides")}).label
        with self._guard:
            runs = self._history.setdefault(session, collections.deque(maxlen=max(2, int(self.limits["history"]))))
            runs.append(keep)
            self._history.move_to_end(session)
            while len(self._history) > 256:  # bounded however many visitors come
                self._history.popitem(last=False)

    def stop(self, session: str = "") -> bool:
        """Stop this visitor's running training; False when it has none."""
        with self._guard:
            run = self._active.get(session)
        if run is None:
            return False
        run.stop()
        return True

    def stop_all(self) -> None:
        """Stop every training and the spare worker (at server exit, or a test's end)."""
        with self._guard:
            runs = list(self._active.values())
            spare, self._spare = self._spare, None
        for run in runs:
            run.stop("stopped: the server is shutting down")
        if spare is not None:
            _end(spare)

    def warm(self) -> None:
        """Keep one preloaded worker ready, so that the next run skips 10-20 s of imports (``limits.spare``)."""
        if not self.limits.get("spare", True):
            return
        with self._guard:
            if self._spare is None or self._spare.poll() is not None:
                self._spare = start_spare(self.limits)

    def _take_spare(self) -> Optional[subprocess.Popen]:
        with self._guard:
            spare, self._spare = self._spare, None
        return spare if spare is not None and spare.poll() is None else None

    # -- running ------------------------------------------------------------------------
    def _cleanup(self) -> None:
        """Delete all but the newest ``keep_runs`` run folders (never an active one)."""
        if not self.runs_root.is_dir():
            return
        with self._guard:
            active = {r.run_dir.resolve() for r in self._active.values()}
        folders = sorted((p for p in self.runs_root.iterdir() if p.is_dir()), key=lambda p: p.name)
        for old in folders[: max(0, len(folders) - int(self.limits["keep_runs"]))]:
            if old.resolve() not in active:
                shutil.rmtree(old, ignore_errors=True)

    def stream(self, job: LearnJob, session: str = "", poll_s: float = 0.4) -> Iterator[Progress]:
        """Run ``job`` and yield a Progress whenever it changes; the last one is finished.

        Waits (yielding ``waiting``) while another training holds the runner.
        Closing the generator early stops the training.
        """
        while not self._lock.acquire(timeout=1.0):
            yield Progress(job, "waiting", message="another training is running; this one starts when it ends")
        run: Optional[LiveRun] = None
        try:
            self._cleanup()
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_COUNTER):04d}"
            run = LiveRun(job, self.runs_root / name, self.worlds_root, self.limits, spare=self._take_spare())
            with self._guard:
                self._active[session] = run
            seen: Optional[tuple] = None
            while True:
                p = run.poll()
                key = (p.phase, len(p.rounds), p.start is not None, p.message)
                if key != seen:
                    seen = key
                    if p.phase == "done" and p.result is not None:
                        self._remember(session, p.result)
                    yield p
                if p.finished:
                    break
                time.sleep(poll_s)
        finally:
            if run is not None:
                run.stop("stopped: the request ended")
                with self._guard:
                    if self._active.get(session) is run:
                        del self._active[session]
                self.warm()  # the next visitor's worker loads while nobody trains
            self._lock.release()

    def run(self, job: LearnJob, session: str = "", on_progress: Any = None) -> Progress:
        """Run ``job`` to the end and return the final Progress (``on_progress`` sees every snapshot)."""
        last = None
        for p in self.stream(job, session):
            if on_progress is not None:
                on_progress(p)
            last = p
        assert last is not None
        return last


_DEFAULT: Optional[LearnRunner] = None
_DEFAULT_LOCK = threading.Lock()


def default_runner() -> LearnRunner:
    """The server's runner (created on first use; its trainings are stopped at exit)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            import atexit

            _DEFAULT = LearnRunner()
            atexit.register(_DEFAULT.stop_all)
        return _DEFAULT
