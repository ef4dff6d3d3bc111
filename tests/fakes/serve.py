"""Run a fake provider in its own process: ``python -m tests.fakes.serve openai [--port N]``.

Prints ``READY <url>`` once listening; benchmarks use this so the fake does not share a GIL
with the load generator.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import subprocess
import sys
import threading
from pathlib import Path

FAKES = {
    "openai": "tests.fakes.openai_server:FakeOpenAI",
    "anthropic": "tests.fakes.anthropic_server:FakeAnthropic",
    "gemini": "tests.fakes.gemini_server:FakeGemini",
}


def start_process(provider: str = "openai") -> tuple[subprocess.Popen[str], str]:
    """The fake in its own process, accepting requests without a key; (process, its URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.serve", provider, "--no-auth"],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("READY "):
        raise RuntimeError(f"the fake did not start: {line!r}")
    return proc, line.split()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("provider", choices=sorted(FAKES))
    parser.add_argument("--no-auth", action="store_true", help="accept requests without a key")
    args = parser.parse_args()
    module, _, name = FAKES[args.provider].partition(":")
    cls = getattr(importlib.import_module(module), name)
    fake = cls(api_key=None) if args.no_auth else cls()
    fake.start()
    print(f"READY {fake.url}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    fake.stop()


if __name__ == "__main__":
    main()
