"""Text signals the analysis looks for: the seed's complexity keywords and task cues.

Matching is by word n-grams, not regular expressions: the text is split into lowercase words
once, and each keyword list is a set of one- to three-word phrases, so every check is a set
lookup. (Seventeen alternation regexes cost ~5 ms on 8 KB of text; this costs ~0.2 ms.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9+#]+(?:['’-][a-z0-9+#]+)*")


def phrases(*items: str) -> frozenset[str]:
    return frozenset(items)


@dataclass(frozen=True)
class Text:
    """The words of a text and where each 1-3 word phrase first occurs."""

    words: tuple[str, ...]
    first_at: dict[str, int]

    @classmethod
    def of(cls, text: str) -> Text:
        words = tuple(_WORD.findall(text.lower()))
        first_at: dict[str, int] = {}
        for i in range(len(words) - 1, -1, -1):  # backwards, so the earliest position wins
            word = words[i]
            first_at[word] = i
            if word in _PHRASE_STARTS:  # only words that begin a known phrase get n-grams
                first_at[" ".join(words[i : i + 2])] = i
                first_at[" ".join(words[i : i + 3])] = i
        return cls(words, first_at)

    def has(self, keys: frozenset[str]) -> bool:
        return not keys.isdisjoint(self.first_at)

    def found(self, keys: frozenset[str]) -> set[str]:
        return keys.intersection(self.first_at)

    def first(self, keys: frozenset[str]) -> int | None:
        positions = [self.first_at[k] for k in keys.intersection(self.first_at)]
        return min(positions) if positions else None

    def starts_with(self, keys: frozenset[str]) -> bool:
        head = self.words[:2]
        return bool(head) and (head[0] in keys or " ".join(head) in keys)


# The seed's keyword lists, and close relatives.
HIGH_KEYWORDS = phrases(
    "analyze in depth", "analyse in depth", "in-depth analysis", "comprehensive analysis",
    "step by step", "step-by-step", "think through", "reason through", "prove", "derive",
    "trade-off", "trade-offs", "tradeoffs",
)
MEDIUM_KEYWORDS = phrases("explain", "describe", "summarize", "summarise", "compare", "contrast")
LOW_KEYWORDS = phrases("what is", "what's", "who is", "define", "list", "when was", "when did")
DETAILED = phrases(
    "in detail", "detailed", "thorough", "thoroughly", "elaborate", "in depth", "in-depth", "extensive", "extensively"
)
DOMAIN = phrases(
    "legal", "lawsuit", "statute", "liability", "medical", "clinical", "diagnosis", "diagnose",
    "pharmacology", "dosage", "financial", "tax", "taxes", "taxation", "accounting", "regulation",
    "regulatory", "compliance", "security", "vulnerability", "vulnerabilities", "exploit",
    "cryptography", "cryptographic", "genomic", "genomics", "quantum", "actuarial",
)
# Distinct action verbs: three or more in one request means a multi-step task.
ACTION_VERBS = phrases(
    "analyze", "analyse", "suggest", "explain", "compare", "evaluate", "design", "propose", "identify",
    "assess", "recommend", "implement", "justify", "critique", "plan", "prioritize", "estimate",
    "summarize", "list",
)
SEQUENCE = phrases("first", "firstly", "then", "next", "finally", "afterwards", "secondly", "lastly")

CODE_GENERATION_VERBS = phrases(
    "write", "create", "implement", "build", "generate", "make", "scaffold", "develop", "code up",
    "port", "convert", "translate",
)
CODE_ANALYSIS_VERBS = phrases(
    "analyze", "analyse", "review", "audit", "debug", "find", "fix", "explain", "refactor", "optimize",
    "optimise", "what does", "why does", "identify", "check", "inspect", "assess",
)
CODE_NOUNS = phrases(
    "code", "function", "class", "script", "program", "api", "endpoint", "microservice", "module",
    "regex", "sql", "query", "unit test", "unit tests", "cli", "library", "method", "component",
    "dockerfile", "snippet", "bug", "stack trace", "stacktrace", "python", "javascript", "typescript",
    "golang", "rust", "java", "c++", "c#", "kotlin", "swift", "bash", "shell script", "fastapi",
    "django", "flask", "react", "terraform", "helm chart",
)
CODE_MARKERS = re.compile(
    r"```|^\s*(?:def |class |import |from \S+ import |function |const |let |var |public |#include|package )",
    re.MULTILINE,
)
LANGUAGES = phrases(
    "english", "spanish", "french", "german", "italian", "portuguese", "chinese", "japanese", "korean",
    "arabic", "russian", "hindi", "dutch",
)
TRANSLATION = phrases("translate", "translation", "translating") | {f"into {lang}" for lang in LANGUAGES}
SUMMARIZATION = phrases(
    "summarize", "summarise", "summary", "tl dr", "tldr", "key points", "recap", "condense", "gist"
)
QUESTION_START = phrases(
    "what", "who", "when", "where", "which", "how many", "how much", "how old", "how far", "how long",
    "is", "are", "does", "do", "define", "list",
)
ANALYSIS = phrases("analyze", "analyse", "analysis", "evaluate", "assess", "compare", "why", "critique")
URGENT = phrases(
    "quick", "quickly", "asap", "immediately", "right now", "real-time", "realtime", "real time", "instant",
    "instantly", "urgent", "urgently", "brief", "briefly", "tl dr", "tldr",
)
_PHRASE_STARTS = frozenset(
    phrase.split(" ")[0]
    for group in (
        HIGH_KEYWORDS, MEDIUM_KEYWORDS, LOW_KEYWORDS, DETAILED, DOMAIN, ACTION_VERBS, SEQUENCE,
        CODE_GENERATION_VERBS, CODE_ANALYSIS_VERBS, CODE_NOUNS, TRANSLATION, SUMMARIZATION,
        QUESTION_START, ANALYSIS, URGENT,
    )
    for phrase in group
    if " " in phrase
)
LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S", re.MULTILINE)
