"""Run a fake provider in its own process: ``python -m tests.fakes.serve openai [--port N]``.

Prints ``READY <url>`` once listening; benchmarks use this so the fake does not share a GIL
with the load generator.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import threading

FAKES = {
    "openai": "tests.fakes.openai_server:FakeOpenAI",
    "anthropic": "tests.fakes.anthropic_server:FakeAnthropic",
    "gemini": "tests.fakes.gemini_server:FakeGemini",
}


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
