"""experiments.cli: the multi-process start-up every experiment's main runs first."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax

from cat_jax import sharding
from experiments import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLUSTER_VARS = sharding.CLUSTER_ENV_VARS  # cleared where a test needs a single-process environment

PROGRAM = """
import json
from absl import app
from experiments import cli

def main(argv):
    topology = cli.setup()
    import jax
    print("SETUP " + json.dumps({**topology, "is_initialized": jax.distributed.is_initialized()}), flush=True)

app.run(main)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_setup_initialises_jax_distributed_and_logs_the_topology():
    """One process with a localhost coordinator: the same call a multi-process run makes on every host."""
    flags = [f"--coordinator_address=localhost:{_free_port()}", "--num_processes=1", "--process_id=0"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, *flags],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("SETUP "))
    assert json.loads(line[len("SETUP ") :]) == {
        "process_index": 0,
        "process_count": 1,
        "local_devices": 2,
        "global_devices": 2,
        "distributed": True,
        "is_initialized": True,
    }
    assert (
        "process 0 of 1: 2 local devices, 2 global devices (cpu); jax.distributed initialised" in proc.stderr
    )


def test_setup_is_a_no_op_when_not_asked(monkeypatch):
    for var in CLUSTER_VARS:
        monkeypatch.delenv(var, raising=False)
    topology = cli.setup()  # flags not parsed here: only the environment could ask
    assert topology == {
        "process_index": 0,
        "process_count": 1,
        "local_devices": 8,
        "global_devices": 8,
        "distributed": False,
    }
    assert not jax.distributed.is_initialized()


def test_say_prints_on_the_writing_process_only(monkeypatch, capsys):
    from cat_jax import reporting

    cli.say("from the writer")
    monkeypatch.setattr(reporting, "is_writer", lambda: False)
    cli.say("from another process")
    assert capsys.readouterr().out == "from the writer\n"
