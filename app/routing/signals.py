"""Text signals the analysis looks for: the seed's complexity keywords and task cues.

Patterns run only on the head and tail of the latest user turn (see ``analysis.instruction_text``),
so their cost does not grow with a document pasted in the middle.
"""

from __future__ import annotations

import re

_I = re.IGNORECASE


def words(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", _I)


# The seed's keyword lists, and close relatives.
HIGH_KEYWORDS = words(
    r"analy[sz]e in depth",
    r"in-depth analysis",
    r"comprehensive analysis",
    r"step[- ]by[- ]step",
    r"think through",
    r"reason through",
    r"prove",
    r"derive",
    r"trade-?offs?",
)
MEDIUM_KEYWORDS = words(r"explain", r"describe", r"summari[sz]e", r"compare", r"contrast")
LOW_KEYWORDS = words(r"what is", r"what's", r"who is", r"define", r"list", r"when (?:is|was|did)")
DETAILED = words(r"in detail", r"detailed", r"thorough(?:ly)?", r"elaborate", r"in depth", r"extensive(?:ly)?")
DOMAIN = words(
    r"legal",
    r"lawsuit",
    r"contract clause",
    r"statute",
    r"medical",
    r"clinical",
    r"diagnos\w*",
    r"pharmac\w*",
    r"financial",
    r"tax(?:es|ation)?",
    r"accounting",
    r"regulat\w*",
    r"compliance",
    r"security",
    r"vulnerabilit\w*",
    r"cryptograph\w*",
    r"genomic\w*",
    r"quantum",
    r"actuarial",
)
# Distinct action verbs: three or more in one request means a multi-step task.
ACTION_VERBS = words(
    r"analy[sz]e",
    r"suggest",
    r"explain",
    r"compare",
    r"evaluate",
    r"design",
    r"propose",
    r"identify",
    r"assess",
    r"recommend",
    r"implement",
    r"justify",
    r"critique",
    r"plan",
    r"prioriti[sz]e",
    r"estimate",
    r"summari[sz]e",
    r"list",
)
SEQUENCE = re.compile(r"\b(?:first|firstly|then|next|finally|afterwards?)\b[^.?!]*", _I)
LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S", re.MULTILINE)

CODE_GENERATION_VERBS = words(
    r"write",
    r"create",
    r"implement",
    r"build",
    r"generate",
    r"make",
    r"scaffold",
    r"develop",
    r"code up",
    r"port",
    r"convert",
    r"translate",
)
CODE_ANALYSIS_VERBS = words(
    r"analy[sz]e",
    r"review",
    r"audit",
    r"debug",
    r"find",
    r"fix",
    r"explain",
    r"refactor",
    r"optimi[sz]e",
    r"what does",
    r"why does",
    r"identify",
    r"check",
    r"inspect",
    r"assess",
)
CODE_NOUNS = words(
    r"code",
    r"function",
    r"class",
    r"script",
    r"program",
    r"api",
    r"rest api",
    r"endpoint",
    r"microservice",
    r"module",
    r"regex",
    r"sql",
    r"query",
    r"unit tests?",
    r"cli",
    r"library",
    r"method",
    r"component",
    r"dockerfile",
    r"snippet",
    r"bug",
    r"stack ?trace",
    r"python",
    r"javascript",
    r"typescript",
    r"golang",
    r"rust",
    r"java",
    r"c\+\+",
    r"c#",
    r"kotlin",
    r"swift",
    r"bash",
    r"shell script",
    r"fastapi",
    r"django",
    r"flask",
    r"react",
    r"kubernetes manifest",
    r"terraform",
)
CODE_MARKERS = re.compile(
    r"```|^\s*(?:def |class |import |from \S+ import |function |const |let |var |public |#include|package )",
    re.MULTILINE,
)
TRANSLATION = re.compile(
    r"\btranslat(?:e|ion|ing)\b|\binto (?:english|spanish|french|german|italian|portuguese|chinese|"
    r"japanese|korean|arabic|russian|hindi|dutch)\b",
    _I,
)
SUMMARIZATION = words(r"summari[sz]e", r"summary", r"tl;?dr", r"key points", r"recap", r"condense", r"gist")
QUESTION_START = re.compile(
    r"^\s*(?:what|who|when|where|which|how (?:many|much|old|far|long)|is|are|does|do|define|list)\b", _I
)
ANALYSIS = words(r"analy[sz]e", r"analysis", r"evaluate", r"assess", r"compare", r"why", r"critique")
URGENT = words(
    r"quick(?:ly)?",
    r"asap",
    r"immediately",
    r"right now",
    r"real[- ]?time",
    r"instant(?:ly)?",
    r"urgent(?:ly)?",
    r"brief(?:ly)?",
    r"tl;?dr",
)


def first_match(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    return match.start() if match else None


def distinct(pattern: re.Pattern[str], text: str) -> set[str]:
    return {m.group(0).lower() for m in pattern.finditer(text)}
