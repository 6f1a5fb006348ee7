"""ZeroGPU's device API, simulated for the real `spaces` package, which talks to it over HTTP as on a
Space: `/schedule` grants a GPU or refuses in one of the ways the platform does, `/allow` hands it
to the worker process `spaces` forks for the call, `/release` gives it back. Every call is
recorded. `serve()` serves it and gives the environment that points `spaces` at it, which a
process must have before it imports `spaces`: the package reads its settings then.

The GPU itself is simulated too: a worker's CUDA start and the move of the app's tensors onto
the GPU (`spaces.zero.torch.init` and `move`) do nothing, since this machine has no GPU; what
trains in the worker trains on the CPU (CNNLAB_GRANTED_DEVICE=cpu).
"""

import base64
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

calls: list[tuple[str, dict]] = []  # (path, query) of every call, in order
# What /schedule answers next: "grant", or a refusal: "quota" (HTTP 429 with the quota left and
# the wait), "illegal-duration" (429 with a negative wait), "queue-timeout" (a queue stream that
# fails), "unavailable" (503).
answer = "grant"
auth: str | None = None  # the X-Authenticated header: None (no account), "regular" (free) or "pro"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        calls.append((url.path, query))
        if url.path == "/schedule":
            self.schedule()
        else:  # /startup-report, /allow, /release
            self.reply(200, b"{}")

    def schedule(self) -> None:
        headers = {"X-Authenticated": auth} if auth else {}
        if answer == "grant":
            body = {"idle": False, "nvidiaIndex": 0, "nvidiaUUID": "GPU-simulated", "allowToken": f"token-{len(calls)}"}
            self.reply(200, json.dumps(body).encode(), headers)
        elif answer == "quota":
            self.reply(429, json.dumps({"left": 12, "wait": 3600}).encode(), headers)
        elif answer == "illegal-duration":
            self.reply(429, json.dumps({"left": 12, "wait": -1}).encode(), headers)
        elif answer == "queue-timeout":
            self.reply(200, b"event: failed\ndata: null\n\n", {**headers, "Content-Type": "text/event-stream", "X-Queuing-Reason": "node"})
        else:
            self.reply(503, b"{}", headers)

    def reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve() -> dict[str, str]:
    """Serve the device API in this process; the environment that points `spaces` at it, which a
    process must have when it imports `spaces`, as on a ZeroGPU Space."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cgroup = tempfile.NamedTemporaryFile("w", suffix=".cgroup", delete=False)
    cgroup.write("12:devices:/simulated\n")
    cgroup.close()
    return {
        "SPACES_ZERO_GPU": "true",
        "SPACES_ZERO_DEVICE_API_URL": f"http://127.0.0.1:{server.server_port}",
        "ZEROGPU_PROC_SELF_CGROUP_PATH": cgroup.name,
    }


def simulate_gpu() -> None:
    """A worker's GPU start and tensor move, which need a GPU, do nothing (after `import spaces`)."""
    from spaces.zero import torch as zero_torch

    zero_torch.init = lambda nvidia_uuid: None
    zero_torch.move = lambda callback=None: None


def ip_token() -> str:
    """An X-IP-Token as the Hub signs one: a JWT, whose payload `spaces` reads (unverified)."""
    payload = base64.urlsafe_b64encode(json.dumps({"ip": "203.0.113.7"}).encode()).decode().rstrip("=")
    return f"header.{payload}.signature"


def released() -> list[dict]:
    """The /release calls so far."""
    return [query for path, query in calls if path == "/release"]


def allowed_pids() -> list[int]:
    """The processes /allow gave a GPU to."""
    return [int(query["pid"]) for path, query in calls if path == "/allow"]
