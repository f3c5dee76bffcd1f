"""The peers `make bench` runs beside autoroute: Portkey's Node gateway and LiteLLM's proxy.

Each is installed on first use into a git-ignored folder under bench/peers/ with its ordinary
client (npm, pip into its own venv), pinned to a version, then started like any other process
under test (same core, same fake upstream, same load). wrk comes from the system's packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench import procs

HERE = Path(__file__).resolve().parent / "peers"
PORTKEY_VERSION = "1.15.2"
LITELLM_VERSION = "1.108.7"
PORTKEY_DIR = HERE / "portkey"
PORTKEY_MAIN = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
LITELLM_VENV = HERE / "litellm-venv"


def _run(cmd: list[str], what: str) -> None:
    print(f"  installing {what}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"installing {what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def ensure_wrk() -> None:
    """wrk from the system's packages (Debian `wrk`); installed with apt-get when running as root."""
    if shutil.which("wrk"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True).returncode != 0:
            _run(["apt-get", "update", "-q"], "the package lists")
            _run(["apt-get", "install", "-y", "-q", "wrk"], "wrk")
    if not shutil.which("wrk"):
        raise RuntimeError("make bench needs wrk: apt-get install -y wrk (or run `python -m bench --smoke`, which can use asyncio)")


def ensure_portkey() -> Path:
    if not PORTKEY_MAIN.is_file():
        if not shutil.which("npm"):
            raise RuntimeError("the Portkey gateway needs Node.js and npm: apt-get install -y nodejs npm (or pass --no-peers)")
        PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
        (PORTKEY_DIR / "package.json").write_text('{"name": "bench-portkey", "private": true}\n')
        _run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PORTKEY_DIR), f"@portkey-ai/gateway@{PORTKEY_VERSION}"], "Portkey"
        )
    return PORTKEY_MAIN


def ensure_litellm() -> Path:
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.is_file():
        _run([sys.executable, "-m", "venv", str(LITELLM_VENV)], "a venv for LiteLLM")
        _run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], "LiteLLM proxy")
    return exe


def start_portkey(port: int, core: int | None, logdir: Path) -> procs.Proc:
    main = ensure_portkey()
    return procs.start(
        "portkey",
        [str(main), f"--port={port}", "--headless"],
        port,
        core=core,
        exe=[shutil.which("node") or "node"],
        env={"NODE_ENV": "production"},
        ready_path="/",
        log=logdir / "portkey.log",
        cwd=PORTKEY_DIR,
    )


LITELLM_CONFIG = """
model_list:
  - model_name: gpt-4.1
    litellm_params:
      model: openai/gpt-4.1
      api_base: {upstream}/v1
      api_key: sk-bench-openai
litellm_settings:
  telemetry: false
  drop_params: true
general_settings:
  master_key: {master}
"""


def start_litellm(port: int, core: int | None, logdir: Path, upstream: str, master: str) -> procs.Proc:
    exe = ensure_litellm()
    config = logdir / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(upstream=upstream, master=master))
    return procs.start(
        "litellm",
        ["--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        port,
        core=core,
        exe=[str(exe)],
        env={"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DISABLE_SCHEMA_UPDATE": "true"},
        ready_path="/health/liveliness",
        log=logdir / "litellm.log",
        cwd=logdir,
        timeout_s=900,
    )
