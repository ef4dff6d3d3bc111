"""Prompt features for quality prediction: what kind of work a prompt asks for, not its subject.

A quality predictor must work on subjects it never saw, so these features describe the *shape*
of the work (calculation, numbers and formulas, code, recall, open writing, multi-step reasoning,
answer format, length) rather than its vocabulary. Each is a cheap regex count over the
instruction text, squashed to a small range; ``vectorize`` returns them in ``NAMES`` order.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_OPTION = re.compile(r"^\s*\(?([A-Ja-j])[.)]\s+(.*)$", re.MULTILINE)
_NUMBER = re.compile(r"(?<![A-Za-z])[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?")
_DECIMAL = re.compile(r"\d\.\d")
_MATH_SYMBOLS = "=+×÷^√∫∑∏≤≥≈±∞π"
_MATH_OP = re.compile(r"\d ?[*/x] ?\d|\\(?:frac|sqrt|sum|int)|\$[^$\n]{1,80}\$")
_UNIT = re.compile(
    r"\d\s*(?:%|kg|g|mg|km|cm|mm|nm|m|s|ms|min|h|hr|hours?|mol|mmol|m?L|J|kJ|cal|kcal|K|°C|°F|N|Pa|kPa|atm|"
    r"V|mV|A|mA|W|kW|Hz|MHz|eV|MeV|ohms?|Ω|years?|days?|dollars?|units?|ft|in|lbs?|mph)\b|[$€£¥]\s*\d"
)
CALC_WORDS = frozenset(
    [
        "calculate",
        "compute",
        "determine",
        "find",
        "solve",
        "evaluate",
        "estimate",
        "approximate",
        "simplify",
        "integrate",
        "differentiate",
        "derivative",
        "integral",
        "equation",
        "percentage",
        "probability",
        "total",
        "sum",
        "product",
        "ratio",
        "rate",
        "area",
        "volume",
    ]
)
CALC_PHRASES = ("how many", "how much", "what is the value", "expected value")
RECALL_PHRASES = (
    "which of the following",
    "who is",
    "who was",
    "who wrote",
    "who invented",
    "when was",
    "when did",
    "known as",
    "called",
    "refers to",
    "defined as",
    "example of",
    "according to",
    "what is the name",
)
NEGATION_WORDS = frozenset(["not", "except", "least", "false", "incorrect", "untrue", "cannot"])
CODE_WORDS = frozenset(
    [
        "python",
        "javascript",
        "typescript",
        "java",
        "golang",
        "rust",
        "kotlin",
        "swift",
        "scala",
        "ruby",
        "php",
        "haskell",
        "c++",
        "c#",
        "sql",
        "bash",
        "html",
        "css",
        "react",
        "django",
        "flask",
        "fastapi",
        "nodejs",
        "regex",
        "api",
        "json",
        "yaml",
        "docker",
        "kubernetes",
        "algorithm",
        "function",
        "script",
        "code",
        "program",
        "compile",
        "debug",
        "bug",
        "array",
        "recursion",
    ]
)
WRITING_WORDS = frozenset(
    [
        "story",
        "poem",
        "essay",
        "email",
        "letter",
        "article",
        "blog",
        "song",
        "lyrics",
        "speech",
        "slogan",
        "tweet",
        "joke",
        "haiku",
        "paragraph",
        "dialogue",
    ]
)
REASONING_WORDS = frozenset(
    [
        "reason",
        "prove",
        "derive",
        "justify",
        "analyze",
        "analyse",
        "think",
        "logic",
        "puzzle",
        "riddle",
        "suppose",
        "assume",
        "implies",
        "deduce",
        "infer",
        "why",
    ]
)
CONSTRAINT_WORDS = frozenset(["must", "should", "without", "only", "exactly"])
_CODE_LINE = re.compile(
    r"^[ \t]*(?:def |class \w+[:(]|import |from \S+ import |function |const |let |var |public |#include|"
    r"package |SELECT |fn |func )",
    re.MULTILINE,
)
_CODE_MARKS = ("```", ";\n", "{\n", "}\n", "=>", "->", "();", "){")
_WORD = re.compile(r"[a-z+#]+")
_CAPITALIZED = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]+")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S", re.MULTILINE)

NAMES = (
    "log_chars",
    "log_stem_chars",
    "options",
    "option_words",
    "numeric_options",
    "number_density",
    "numbers",
    "decimals",
    "math_ops",
    "units",
    "calc_words",
    "recall_words",
    "negation",
    "code_syntax",
    "code_words",
    "writing",
    "reasoning",
    "constraints",
    "questions",
    "sentences",
    "word_length",
    "capitalized",
    "lines",
    "list_items",
    "non_ascii",
)


HEAD_CHARS, TAIL_CHARS = 1_500, 500  # the part of a long instruction the features look at


def _squash(count: float) -> float:
    return math.log1p(count)


def _is_numeric(option: str) -> bool:
    return bool(_NUMBER.search(option)) and len(_WORD.findall(option.lower())) <= 3


def split_options(text: str) -> tuple[str, list[str]]:
    """The question stem and its lettered answer options (``A. ...`` lines), if it has two or more."""
    matches = list(_OPTION.finditer(text))
    if len(matches) < 2:
        return text, []
    return text[: matches[0].start()], [m.group(2) for m in matches]


def _window(text: str) -> str:
    return text if len(text) <= HEAD_CHARS + TAIL_CHARS else text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]


def _hits(counts: Counter[str], vocabulary: frozenset[str]) -> float:
    return _squash(sum(counts[w] for w in vocabulary.intersection(counts)))


def _phrases(lower: str, phrases: tuple[str, ...]) -> int:
    return sum(lower.count(p) for p in phrases)


def vectorize(text: str, length: int | None = None) -> list[float]:
    """The features of an instruction text, in ``NAMES`` order; ``length`` is the whole text's
    length in characters when ``text`` is only part of it."""
    full = length if length is not None else len(text)
    text = _window(text)
    stem, options = split_options(text)
    lower = stem.lower()
    words = _WORD.findall(lower)
    counts = Counter(words)
    n_words = max(1, len(words))
    numbers = len(_NUMBER.findall(stem))
    option_words = sum(len(_WORD.findall(o.lower())) for o in options) / len(options) if options else 0.0
    numeric = sum(_is_numeric(o) for o in options) / len(options) if options else 0.0
    return [
        _squash(full) / 10,
        _squash(len(stem) + max(0, full - len(text))) / 10,
        len(options) / 10,
        _squash(option_words),
        numeric,
        min(1.0, 20 * numbers / n_words),
        _squash(numbers),
        _squash(len(_DECIMAL.findall(text))),
        _squash(sum(map(text.count, _MATH_SYMBOLS)) + len(_MATH_OP.findall(text))),
        _squash(len(_UNIT.findall(text))),
        _squash(_phrases(lower, CALC_PHRASES)) + _hits(counts, CALC_WORDS),
        _squash(_phrases(lower, RECALL_PHRASES)),
        _hits(counts, NEGATION_WORDS),
        _squash(sum(map(text.count, _CODE_MARKS)) + len(_CODE_LINE.findall(text))),
        _hits(counts, CODE_WORDS),
        _hits(counts, WRITING_WORDS),
        _squash(lower.count("step by step") + lower.count("step-by-step")) + _hits(counts, REASONING_WORDS),
        _hits(counts, CONSTRAINT_WORDS),
        _squash(stem.count("?")),
        _squash(stem.count(". ") + stem.count(".\n") + 1),
        sum(map(len, words)) / n_words / 10,
        min(1.0, len(_CAPITALIZED.findall(stem)) / n_words * 5),
        _squash(text.count("\n")),
        _squash(len(_LIST_ITEM.findall(stem))),
        min(1.0, (len(text.encode("utf-8", "surrogatepass")) - len(text)) / max(1, len(text)) * 5),
    ]
