"""Start the processes under test, pinned to cores, and read their CPU time and memory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    url: str
    ready_seconds: float = 0.0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def start(
    name: str,
    args: list[str],
    port: int,
    *,
    core: int | None,
    env: dict[str, str] | None = None,
    ready_path: str = "/readyz",
    log: Path | None = None,
    exe: list[str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 60,
) -> Proc:
    """Start `python args...` (or `exe + args`), pinned to `core`, and wait until `ready_path` answers 200."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    out = open(log, "wb") if log else subprocess.DEVNULL
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    started = time.perf_counter()
    popen = subprocess.Popen([*(exe or [sys.executable]), *args], cwd=cwd or REPO, env=full_env, stdout=out, stderr=out, preexec_fn=pin)
    url = f"http://127.0.0.1:{port}"
    proc = Proc(name, popen, url)
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{name} exited with {popen.returncode}" + (f"; see {log}" if log else ""))
        try:
            if httpx.get(url + ready_path, timeout=0.5).status_code == 200:
                proc.ready_seconds = time.perf_counter() - started
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    proc.stop()
    raise RuntimeError(f"{name} was not ready within {timeout_s:.0f} s" + (f"; see {log}" if log else ""))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    popen: subprocess.Popen
    port: int

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()


def start_redis(core: int | None, logdir: Path) -> RedisServer:
    """The bench's own redis-server on a free port, no persistence (never someone else's Redis)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("the bench needs redis-server: apt-get install -y redis-server")
    port = free_port()
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--databases", "8"]
    popen = subprocess.Popen(cmd, cwd=logdir, stdout=open(logdir / "redis.log", "wb"), stderr=subprocess.STDOUT, preexec_fn=pin)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return RedisServer(popen, port)
        except OSError:
            pass
        time.sleep(0.05)
    popen.kill()
    raise RuntimeError("redis-server did not start within 30 s")
