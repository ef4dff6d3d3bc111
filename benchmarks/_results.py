"""Writes one benchmark's section into benchmarks/RESULTS.md, leaving the other sections alone."""

from __future__ import annotations

import os
import platform
import re
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
PLOTS = Path(__file__).with_name("plots")
HEADER = (
    "# Benchmark results\n\n"
    "Each section is rewritten by the script it names, and opens with the issue's targets and whether\n"
    "they are met; run them all with `make bench` (`benchmarks/README.md`).\n"
)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else ():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    cpus = len(os.sched_getaffinity(0))
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = ", ".join(
        f"{p} {version(p)}" for p in ("ray", "fastapi", "openai", "tiktoken", "genai-prices")
    )
    return (
        f"{cpu_model()} ({platform.machine()}), {cpus} CPUs, {memory_gb:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, {versions}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def write_section(name: str, title: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n## {title}\n\n_Measured on {machine()}._\n\n{body.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _m: section, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + section + "\n"
    )
    RESULTS.write_text(text)


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save_plot(figure, name: str, alt: str) -> str:
    """Saves a matplotlib figure as benchmarks/plots/<name>.png; returns the Markdown that shows it."""
    PLOTS.mkdir(exist_ok=True)
    figure.tight_layout()
    figure.savefig(PLOTS / f"{name}.png", dpi=100)
    __import__("matplotlib.pyplot").pyplot.close(figure)
    return f"![{alt}](plots/{name}.png)"


def figure(width: float = 8, height: float = 4.5):
    """A new (figure, axes) pair drawn off-screen (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))
