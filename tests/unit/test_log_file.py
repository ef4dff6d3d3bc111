"""The router's JSON log file (``$ROUTER_LOG_DIR/router.jsonl``), without Ray: each record is one
JSON object on one line, in the file as soon as the call returns (a process killed right after
loses nothing), and several processes appending at once never mix their lines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.observability import logs
from app.observability.logs import LOG_DIR_ENV, JsonLinesFile, configure_logging, log_event, log_file

ROOT = Path(__file__).parents[2]


@pytest.fixture
def router_logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """The ``hybrid_router`` logger with its handlers as they were before the test, after it."""
    saved = list(logs.logger.handlers)
    monkeypatch.setattr(logs.logger, "level", logs.logger.level)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    yield logs.logger
    for handler in logs.logger.handlers:
        if handler not in saved:
            handler.close()
    logs.logger.handlers[:] = saved


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_file_is_router_jsonl_in_router_log_dir(tmp_path: Path) -> None:
    assert log_file({LOG_DIR_ENV: str(tmp_path)}) == tmp_path / "router.jsonl"
    assert log_file({LOG_DIR_ENV: "~/x"}) == Path.home() / "x" / "router.jsonl"
    assert log_file({}) is None and log_file({LOG_DIR_ENV: ""}) is None


def test_a_record_is_in_the_file_when_the_call_returns(router_logger, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))  # created on demand
    configure_logging("info")
    log_event("route_decision", request_id="req-1", model="mistral-7b-instruct", cost_usd=0.0001)
    log_event("fallback", level=logging.WARNING, from_model="a", to_model="b", reason="timeout")
    (decision, fallback) = lines(
        tmp_path / "logs" / "router.jsonl"
    )  # read without closing or flushing anything
    assert decision["event"] == "route_decision" and decision["request_id"] == "req-1"
    assert decision["level"] == "info" and decision["logger"] == "hybrid_router" and decision["ts"] > 0
    assert fallback["event"] == "fallback" and fallback["level"] == "warning"
    assert oct((tmp_path / "logs" / "router.jsonl").stat().st_mode & 0o777) == "0o600"


def test_a_value_with_newlines_stays_on_its_line(router_logger, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path))
    configure_logging()
    log_event("budget_alert", note="one\ntwo\r\nthree", nested={"k": ["x\ny"]})
    (record,) = lines(tmp_path / "router.jsonl")
    assert record["note"] == "one\ntwo\r\nthree" and record["nested"] == {"k": ["x\ny"]}


def test_appends_to_what_is_there(router_logger, monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "router.jsonl").write_text('{"event":"earlier"}\n')
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path))
    configure_logging()
    log_event("router_started")
    assert [r["event"] for r in lines(tmp_path / "router.jsonl")] == ["earlier", "router_started"]


def test_configured_twice_it_writes_each_record_once_and_follows_the_variable(
    router_logger, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "a"))
    configure_logging()
    configure_logging()
    log_event("one")
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "b"))
    configure_logging()
    log_event("two")
    monkeypatch.delenv(LOG_DIR_ENV)
    configure_logging()
    log_event("three")
    assert [r["event"] for r in lines(tmp_path / "a" / "router.jsonl")] == ["one"]
    assert [r["event"] for r in lines(tmp_path / "b" / "router.jsonl")] == ["two"]
    assert not any(isinstance(h, JsonLinesFile) for h in router_logger.handlers)


def test_without_router_log_dir_there_is_no_file(router_logger, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(LOG_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    configure_logging()
    log_event("route_decision")
    assert not any(isinstance(h, JsonLinesFile) for h in router_logger.handlers)
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_directory_is_reported_and_stderr_still_logs(
    router_logger, monkeypatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(LOG_DIR_ENV, str(blocker / "logs"))  # a directory under a file: cannot exist
    configure_logging()
    log_event("route_decision", request_id="req-9")
    err = capsys.readouterr().err
    assert "cannot write the log file" in err
    assert not any(isinstance(h, JsonLinesFile) for h in router_logger.handlers)


def test_records_of_a_killed_process_are_kept(tmp_path: Path) -> None:
    """What a replica logged before it was killed (SIGKILL, no atexit, no flush) is in the file."""
    code = textwrap.dedent(
        """
        import os, signal
        from app.observability.logs import configure_logging, log_event
        configure_logging()
        for i in range(50):
            log_event("route_decision", request_id=f"req-{i}")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, LOG_DIR_ENV: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert done.returncode == -9
    assert [r["request_id"] for r in lines(tmp_path / "router.jsonl")] == [f"req-{i}" for i in range(50)]


def test_processes_appending_at_once_never_mix_their_lines(tmp_path: Path) -> None:
    """Four processes (as an ingress replica, adapters and the engine would) write long records at
    the same time: every line is one whole record of one of them."""
    code = textwrap.dedent(
        """
        import sys
        from app.observability.logs import configure_logging, log_event
        configure_logging()
        writer = sys.argv[1]
        for i in range(300):
            log_event("route_decision", writer=writer, i=i, padding=writer * 6000)
        """
    )
    env = {**os.environ, LOG_DIR_ENV: str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, w], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        for w in "abcd"
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    records = lines(tmp_path / "router.jsonl")
    assert len(records) == 1200
    for writer in "abcd":
        mine = [r for r in records if r["writer"] == writer]
        assert [r["i"] for r in mine] == list(range(300))
        assert all(r["padding"] == writer * 6000 for r in mine)
