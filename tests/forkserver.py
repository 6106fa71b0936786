"""Real `dyn` processes without paying for `import torch` each time: a fork server.

A fresh `dyn train` spends 3-14 s importing torch before it does anything, which 30 kills
cannot afford. The server is one interpreter that imports dyn's modules (torch included) and
runs no torch operation itself, so no thread pool exists to break at fork. For each request it
forks a child that is an ordinary `dyn` process from then on: its own pid, its own signals,
stdout and stderr in files the request names; it runs `dyn.cli.main(argv)` as the
console script does and exits with main's status (an uncaught exception: its traceback on
stderr and status 1, as Python's own exit does). Optionally the child first lowers its file
size limit (RLIMIT_FSIZE) or its address space (RLIMIT_AS), or becomes another user, as
`preexec_fn` would.

Protocol (one JSON object per line): the client sends a request; the server answers
{"pid": N} once the child exists, then {"pid": N, "code": C} or {"pid": N, "signal": S}
when it has ended. One child at a time.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Everything the commands import on their way, so that a child that gave up root can still run
# them (it may not be able to read the interpreter's own files), and so that no child pays for it.
PRELOAD = [
    "dyn.cli", "dyn.reader", "dyn.writer", "dyn.inspect", "dyn.synthetic",
    "dyn.importers.cli", "dyn.importers.checkpoints", "dyn.importers.predictions",
    "dyn.importers.load", "dyn.train.import_eval",
    "dyn.analyze.cli", "dyn.analyze.commands.report", "dyn.analyze.plot.stability", "dyn.analyze.plot.barcode",
    "dyn.analyze.plot.weight_diff", "dyn.analyze.plot.accuracy", "dyn.analyze.plot.histogram", "dyn.analyze.plot.agreement",
    "dyn.train.cli", "dyn.train.loop", "dyn.train.data", "dyn.train.models", "dyn.train.recorder", "dyn.train.sweep",
    "torch", "torchvision", "safetensors", "safetensors.numpy", "pandas", "matplotlib.figure",
    "matplotlib.backends.backend_agg", "matplotlib.backends.backend_pdf", "matplotlib.backends.backend_svg",
    "pyarrow.parquet", "h5py", "numpy", "resource", "tempfile", "secrets", "csv", "pickletools", "zipfile",
    "socket", "platform", "hashlib", "argparse", "shlex", "traceback",
]


# Without torch: what `dyn analyze`, `dyn table` and `dyn inspect` need. A fork of an interpreter
# that imported torch costs ~0.1 s (its mappings); of this one, a few ms.
ANALYSIS = [m for m in PRELOAD if m.split(".")[0] not in ("torch", "torchvision", "safetensors", "pyarrow")
            and not m.startswith(("dyn.importers", "dyn.train"))]


# ------------------------------------------------------------------------------- server
def serve(with_torch: bool = True) -> None:
    import importlib

    for name in PRELOAD if with_torch else ANALYSIS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if with_torch:
        import torch

    # the children's own first torch operation must be the first of any process: check none ran
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    proto.write(json.dumps({"ready": os.getpid(), "torch": torch.__version__ if with_torch else None}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req, null, proto)  # never returns
        proto.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            proto.write(json.dumps({"pid": pid, "signal": os.WTERMSIG(status)}) + "\n")
        else:
            proto.write(json.dumps({"pid": pid, "code": os.WEXITSTATUS(status)}) + "\n")


def _child(req: dict, null: int, proto) -> None:
    code = 1
    try:
        os.dup2(null, 0)
        for fd, key in ((1, "stdout"), (2, "stderr")):
            target = os.open(req[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if req.get(key) else null
            os.dup2(target, fd)
        proto.close()
        os.chdir(req.get("cwd") or ROOT)
        for k, v in (req.get("env") or {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if "torch" in sys.modules and (req.get("env") or {}).get("OMP_NUM_THREADS"):
            # torch read OMP_NUM_THREADS when the server imported it: a fork keeps the server's
            # thread count, and 2 threads round a convolution's sums differently from 1
            sys.modules["torch"].set_num_threads(int(req["env"]["OMP_NUM_THREADS"]))
        import resource

        if req.get("fsize") is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (req["fsize"], req["fsize"]))
        if req.get("memory"):  # bytes of address space beyond what the child inherits
            with open("/proc/self/status") as status:
                size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
            resource.setrlimit(resource.RLIMIT_AS, (size + req["memory"], size + req["memory"]))
        if req.get("uid") is not None:
            os.setgroups([])
            os.setgid(req["gid"])
            os.setuid(req["uid"])
        from dyn.cli import main

        sys.argv = ["dyn", *req["argv"]]
        try:
            main(req["argv"])
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# ------------------------------------------------------------------------------- client
@dataclass
class Result:
    code: int | None      # exit status, None if killed by a signal
    signal: int | None
    stdout: str
    stderr: str
    seconds: float


class Child:
    """A running `dyn` process forked by the server."""

    def __init__(self, server: "ForkServer", pid: int, stdout: Path, stderr: Path):
        self.server, self.pid, self.stdout_path, self.stderr_path = server, pid, stdout, stderr
        self.started = time.monotonic()
        self.status: dict | None = None
        self._seen = 0

    def poll(self) -> dict | None:
        if self.status is None:
            self.status = self.server._status(self.pid, 0)
        return self.status

    def new_lines(self) -> list[str]:
        """Complete lines its stderr gained since the last call."""
        data = self.stderr_path.read_bytes()
        end = data.rfind(b"\n", self._seen) + 1
        if end <= self._seen:
            return []
        lines = data[self._seen:end].decode(errors="replace").splitlines()
        self._seen = end
        return lines

    def wait_line(self, predicate, timeout: float = 120.0) -> str | None:
        """The first new stderr line for which predicate(line) holds; None if it ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.new_lines():
                if predicate(line):
                    return line
            if self.poll() is not None:
                for line in self.new_lines():
                    if predicate(line):
                        return line
                return None
            time.sleep(0.003)
        raise TimeoutError(f"no matching line within {timeout} s; stderr: {self.stderr_path.read_text()[-2000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout: float = 300.0) -> Result:
        if self.status is None:
            self.status = self.server._status(self.pid, timeout)
        if self.status is None:  # ran past its time: a hang is a failure, but end it
            os.kill(self.pid, signal.SIGKILL)
            self.status = self.server._status(self.pid, 60)
            self.status["timeout"] = True
        return Result(self.status.get("code"), self.status.get("signal"), self.stdout_path.read_text(errors="replace"),
                      self.stderr_path.read_text(errors="replace"), time.monotonic() - self.started)


class ForkServer:
    def __init__(self, folder: Path, torch: bool = True):
        """torch=False: the server imports only what the analysis commands need (no torch), so
        each fork is cheap; its children cannot train or import checkpoints quickly."""
        self.folder = Path(folder)
        self.n = 0
        self.p = subprocess.Popen([sys.executable, __file__, *([] if torch else ["--no-torch"])],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, bufsize=0)
        self._buf = b""
        ready = self._message(600)
        if not ready or "ready" not in ready:
            raise RuntimeError("the fork server did not start")
        self.current: Child | None = None

    def start(self, *argv, cwd=None, env=None, fsize=None, user=None, memory=None) -> Child:
        """Fork `dyn ARGV`; fsize: its RLIMIT_FSIZE; user: (uid, gid) to become before running it;
        memory: bytes of address space it may add to what it inherits (RLIMIT_AS)."""
        if self.current is not None and self.current.status is None:
            raise RuntimeError(f"child {self.current.pid} is still running")
        self.n += 1
        out, err = self.folder / f"{self.n}.out", self.folder / f"{self.n}.err"
        out.write_bytes(b"")
        err.write_bytes(b"")
        req = {"argv": [str(a) for a in argv], "cwd": str(cwd or ROOT), "env": env or {},
               "stdout": str(out), "stderr": str(err), "fsize": fsize, "memory": memory,
               "uid": user[0] if user else None, "gid": user[1] if user else None}
        self.p.stdin.write((json.dumps(req) + "\n").encode())
        msg = self._message(60)
        self.current = Child(self, msg["pid"], out, err)
        return self.current

    def run(self, *argv, timeout: float = 300.0, **kw) -> Result:
        return self.start(*argv, **kw).wait(timeout)

    def _status(self, pid: int, timeout: float) -> dict | None:
        msg = self._message(timeout)
        assert msg is None or msg["pid"] == pid, msg
        return msg

    def _message(self, timeout: float) -> dict | None:
        """The server's next message, or None if none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        fd = self.p.stdout.fileno()
        while b"\n" not in self._buf:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return None
            data = os.read(fd, 65536)
            if not data:
                raise RuntimeError("the fork server died")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        if self.current is not None and self.current.status is None:
            self.current.kill()
            self.current.wait(60)
        self.p.stdin.close()
        self.p.wait(timeout=60)


if __name__ == "__main__":
    serve(with_torch="--no-torch" not in sys.argv[1:])
