"""A minimal OpenAI-compatible chat-completions server that replays scripted responses.

Run as a process on loopback by the extraction tests and the benchmark (standard library
only)::

    python tests/replay_server.py --port 8123 --script script.json
    python tests/replay_server.py serve MODEL --host 127.0.0.1 --port 8123 ...   # as `vllm serve`
    python tests/replay_server.py -m vllm.entrypoints.openai.api_server --model MODEL --port 8123 ...

Endpoints: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``, and
``GET /_requests`` (the request bodies received so far and the most requests that were
in flight at once, for assertions).

The script (JSON) holds ``model`` (served name), ``revision`` (optional, listed by
``/v1/models``), ``latency_s`` (added to every completion),
``rules`` and ``default``.  A rule ``{"match": "S-17", "responses": [R1, R2, ...]}`` applies
to requests whose user message contains ``match``; its responses are used in turn, the last
one repeating.  Unmatched requests get ``default``.  A response R is one of::

    {"status": 503}                          HTTP error
    {"content": "...", "finish_reason": "length"}   raw reply text (finish_reason "stop" by default)
    {"answers": {"pleura": "..."}}           the JSON object of those answers
    {"auto": "Not mentioned"}                every key of the request's JSON schema -> that text
    any of these plus {"sleep": 2.0}         wait before replying (to provoke client timeouts)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator


class Replay:
    def __init__(self, script: dict):
        self.model = script.get("model", "replay-model")
        self.revision = script.get("revision")  # reported by /v1/models when set
        self.latency_s = float(script.get("latency_s", 0.0))
        self.rules = script.get("rules", [])
        self.default = script.get("default", {"auto": "Not mentioned"})
        self.counts = [0] * len(self.rules)
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def pick(self, body: dict) -> dict:
        text = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        with self.lock:
            self.requests.append(body)
            for i, rule in enumerate(self.rules):
                if rule["match"] in text:
                    responses = rule["responses"]
                    spec = responses[min(self.counts[i], len(responses) - 1)]
                    self.counts[i] += 1
                    return spec
        return self.default


def _schema_keys(body: dict) -> list[str]:
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") or {}
    return list(schema.get("properties", {}))


def make_handler(replay: Replay):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: request bodies hold report text
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/health":
                self._send(200, {})
            elif self.path == "/v1/models":
                card = {"id": replay.model, "object": "model", "owned_by": "replay"}
                if replay.revision:
                    card["revision"] = replay.revision
                self._send(200, {"object": "list", "data": [card]})
            elif self.path == "/_requests":
                with replay.lock:
                    self._send(200, {"requests": list(replay.requests), "max_in_flight": replay.max_in_flight})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            spec = replay.pick(body)
            with replay.lock:
                replay.in_flight += 1
                replay.max_in_flight = max(replay.max_in_flight, replay.in_flight)
            time.sleep(replay.latency_s + float(spec.get("sleep", 0.0)))
            with replay.lock:
                replay.in_flight -= 1
            if "status" in spec:
                self._send(spec["status"], {"error": {"message": spec.get("message", "scripted error"), "type": "replay"}})
                return
            if "content" in spec:
                content = spec["content"]
            elif "answers" in spec:
                content = json.dumps(spec["answers"])
            else:
                content = json.dumps({key: spec.get("auto", "Not mentioned") for key in _schema_keys(body)})
            self._send(
                200,
                {
                    "id": "chatcmpl-replay",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", replay.model),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": spec.get("finish_reason", "stop"),
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                },
            )

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("serve", nargs="?", help="ignored (accepts the `vllm serve MODEL` form)")
    parser.add_argument("model", nargs="?", help="served model name (overrides the script's)")
    parser.add_argument("-m", dest="module", help="ignored (accepts `python -m vllm.entrypoints.openai.api_server`)")
    parser.add_argument("--model", dest="model_flag", help="ignored (the API server module's model folder)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--script", help="JSON script of responses")
    parser.add_argument("--served-model-name")
    parser.add_argument("--startup-delay", type=float, default=0.0, help="seconds before listening (model loading)")
    args, _unknown = parser.parse_known_args(argv)
    script = {}
    if args.script:
        with open(args.script, encoding="utf-8") as fh:
            script = json.load(fh)
    replay = Replay(script)
    if args.served_model_name or args.model:
        replay.model = args.served_model_name or args.model
    time.sleep(args.startup_delay)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(replay))
    server.daemon_threads = True
    print(f"replay server on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    server.serve_forever()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@contextlib.contextmanager
def running(script: dict, workdir: str | Path, startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Run a replay server process on loopback for the block; yields its base URL (no /v1)."""
    path = Path(workdir) / f"replay-{time.time_ns()}.json"
    path.write_text(json.dumps(script), encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--port", str(port), "--script", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                fetch_json(url + "/health")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the replay server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
