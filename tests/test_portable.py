"""A student's laptop: nothing Linux-only on any path a student runs, and the laptop's own GPU.

No Mac or Windows machine runs these tests: a process without Linux's own APIs
(tests/without_linux) stands in for one, and a faked `torch.accelerator` for Apple's GPU.
"""

import ast
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from demo import gpu
from serving import cache
from training import devices
from training.config import TrainConfig
from training.devices import accelerator, cpu_threads, device_name, resolve_device, resolve_precision

ROOT = Path(__file__).parent.parent
WITHOUT_LINUX = str(ROOT / "tests" / "without_linux")

# Run first in each process: it fails unless the simulated OS is in force, so that a simulation that
# silently stopped working cannot pass the tests below for it.
SIMULATION_CHECK = """
import os, pathlib
assert not hasattr(os, "sched_getaffinity"), "the simulation did not load"
for reach in (lambda: open("/proc/cpuinfo"), lambda: pathlib.Path("/sys/devices").iterdir().__next__(), lambda: os.listdir("/proc")):
    try:
        reach()
    except FileNotFoundError:
        continue
    raise AssertionError("/proc or /sys is still there")
"""


def without_linux_env(data_root: Path, cache_folder: Path, **extra: str) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([WITHOUT_LINUX, str(ROOT)]),
        "DATA_DIR": str(data_root),
        "CNNLAB_CACHE": str(cache_folder),
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def test_a_comparison_trains_to_its_verdict_on_the_command_line_without_linux_apis(tiny_root, tmp_path):
    out = tmp_path / "results.json"
    script = SIMULATION_CHECK + f"import sys, runpy; sys.argv = ['training', 'batchnorm', '--preset', 'quick', '--out', {str(out)!r}]; runpy.run_module('training', run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=without_linux_env(tiny_root, tmp_path / "cache"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "verdict: " in done.stdout
    results = json.loads(out.read_text())
    assert [run["label"] for run in results["runs"]] == ["no batch norm", "batch norm"]
    assert all(0 <= run["test_acc"] <= 1 for run in results["runs"])
    assert re.search(r", \d+ threads?$", results["device_name"])  # the CPU named without /proc/cpuinfo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_app_trains_through_its_api_without_linux_apis(tiny_root, tmp_path):
    from gradio_client import Client

    port = free_port()
    env = without_linux_env(tiny_root, tmp_path / "cache", GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1", CNNLAB_WARM="0")
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-c", SIMULATION_CHECK + "import runpy; runpy.run_path('app.py', run_name='__main__')"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        client = None
        deadline = time.monotonic() + 180
        while client is None and time.monotonic() < deadline and server.poll() is None:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:  # not serving yet
                time.sleep(1)
        assert client is not None, (tmp_path / "server.log").read_text()[-3000:]
        outputs = client.predict(api_name="/compare_batchnorm")
        status = next(o for o in outputs if isinstance(o, str) and o.startswith(("Done", "This run failed", "Cannot train")))
        assert status.startswith("Done on"), status
        assert re.search(r", \d+ threads?", status)  # the CPU it trained on, named without /proc/cpuinfo
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def apple_gpu(monkeypatch):
    """torch.accelerator as it reports on an Apple-silicon Mac (macOS 14.5): MPS, able to compute bf16."""
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda check_available=False: torch.device("mps"))
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: (major, minor) <= (14, 5))  # macOS 14.5
    monkeypatch.setattr(devices, "cpu_brand", lambda: "Apple M2")


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda check_available=False: None)


def test_auto_chooses_apples_gpu_on_a_mac_and_names_it(apple_gpu):
    assert resolve_device("auto") == torch.device("mps") == resolve_device("mps")
    assert device_name(torch.device("mps")) == "Apple M2 (MPS)"
    with pytest.raises(ValueError, match="this machine's accelerator is mps; use 'auto' or 'cpu'"):
        resolve_device("cuda")


def test_auto_chooses_cuda_where_pytorch_reports_it(monkeypatch):
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda check_available=False: torch.device("cuda"))
    assert resolve_device("auto") == torch.device("cuda") == resolve_device("cuda")
    with pytest.raises(ValueError, match="accelerator is cuda"):
        resolve_device("mps")


def test_auto_falls_back_to_the_cpu_and_an_absent_gpu_is_refused_with_what_to_do(cpu_only):
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "mps"):
        with pytest.raises(ValueError, match="no accelerator PyTorch can use; use 'auto' or 'cpu'"):
            resolve_device(name)
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or mps"):
        resolve_device("tpu")


def test_a_mac_computes_fp32_unless_bf16_is_asked_for_and_it_can(apple_gpu, monkeypatch):
    mps = torch.device("mps")
    assert resolve_precision("auto", mps) == "fp32"  # whether bf16 is faster depends on the chip
    assert resolve_precision("bf16", mps) == "bf16"
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: (major, minor) <= (13, 6))  # macOS 13.6
    with pytest.raises(ValueError, match="cannot compute bf16; use fp32 or auto"):
        resolve_precision("bf16", mps)


def test_only_a_gpu_that_computes_bf16_natively_gets_it_by_default(monkeypatch):
    asked = {}

    def is_bf16_supported(including_emulation=True):
        asked["including_emulation"] = including_emulation
        return including_emulation  # a pre-Ampere GPU: bf16 only emulated

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32" and asked == {"including_emulation": False}


def test_the_app_trains_on_the_macs_gpu_and_caches_its_runs_apart(apple_gpu, monkeypatch):
    monkeypatch.setattr(gpu, "HOST_DEVICE", "auto")
    assert gpu.gpu_available()
    monkeypatch.setattr(gpu, "HOST_DEVICE", "cpu")  # CNNLAB_DEVICE=cpu: the GPU left alone
    assert not gpu.gpu_available()
    monkeypatch.setattr(cache, "data_source", lambda dataset: "tiny")
    arms = [TrainConfig(device="auto")]
    on_gpu = cache.run_key("batchnorm", arms)
    assert on_gpu != cache.run_key("batchnorm", [TrainConfig(device="cpu")])  # a replay names the device it trained on


def test_the_thread_count_needs_no_affinity_set(monkeypatch):
    for name in ("process_cpu_count", "sched_getaffinity"):
        monkeypatch.delattr(os, name, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cpu_threads() == 6


@pytest.mark.skipif(accelerator() is None, reason="needs an accelerator (CUDA or MPS); this machine has none")
def test_paired_arms_train_alike_on_the_accelerator(tiny_data):
    from training.engine import Finished, compare

    arms = [TrainConfig(label=label, model="cnn-tiny", n_train=160, epochs=1, batch_size=32, device="auto", precision="fp32") for label in ("a", "b")]
    finished = [event for event in compare(arms) if isinstance(event, Finished)]
    assert finished[0].test_acc == finished[1].test_acc and all(event.train_time_s > 0 for event in finished)


# Calls that exist, or work, only on Linux (or only on POSIX): none may come back on a student's path.
LINUX_ONLY_CALLS = {
    ("os", "sched_getaffinity"): "devices.cpu_threads counts the cores on every OS",
    ("os", "fork"): "Windows has no fork",
    ("os", "kill"): "on Windows os.kill(pid, 0) terminates the process",
    ("os", "rename"): "Windows renames no file over another: os.replace does",
    ("os", "getuid"): "POSIX only",
    ("signal", "SIGKILL"): "POSIX only",
}
LINUX_ONLY_MODULES = {"fcntl", "resource", "pwd", "grp", "termios"}
STUDENT_PATHS = [ROOT / "app.py", *sorted(p for folder in ("training", "serving", "demo", "models") for p in (ROOT / folder).rglob("*.py"))]


def guarded_nodes(tree: ast.AST) -> set[int]:
    """The nodes inside `if hasattr(module, "name"):` for a Linux-only call: a portable fallback."""
    guarded = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None) if isinstance(node, ast.If) else None
        if isinstance(test, ast.Call) and getattr(test.func, "id", "") == "hasattr" and len(test.args) == 2:
            module, name = (getattr(a, "id", None) or getattr(a, "value", None) for a in test.args)
            if (module, name) in LINUX_ONLY_CALLS:
                guarded |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return guarded


def linux_only_uses(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(), str(path))
    guarded = guarded_nodes(tree)
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (node.value.id, node.attr) in LINUX_ONLY_CALLS and id(node) not in guarded:
            found.append(f"{where} {node.value.id}.{node.attr}: {LINUX_ONLY_CALLS[node.value.id, node.attr]}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where} import {name}" for name in names if name.split(".")[0] in LINUX_ONLY_MODULES]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(("/proc", "/sys/", "/dev/shm")):
            found.append(f"{where} {node.value!r}: no such path on macOS or Windows")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "get_context" and any(getattr(a, "value", None) == "fork" for a in node.args):
            found.append(f"{where} the fork start method: Windows has no fork")
    return found


def test_no_linux_only_call_comes_back_on_a_students_path():
    found = [use for path in STUDENT_PATHS for use in linux_only_uses(path)]
    assert not found, "\n".join(found)


def test_the_guard_sees_the_calls_it_forbids(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    sample = tmp_path / "sample.py"
    sample.write_text("import os, fcntl\nos.sched_getaffinity(0)\nopen('/proc/cpuinfo')\nos.kill(1, 0)\nif hasattr(os, 'sched_getaffinity'):\n    os.sched_getaffinity(0)\n")
    assert [use.split()[0] for use in linux_only_uses(sample)] == ["sample.py:1", "sample.py:2", "sample.py:3", "sample.py:4"]
