"""A turn's own words: what the user asks, without the material the request is about.

Signals (task cues, complexity keywords, urgency) describe the request, so they come from its own
words. Quoted text, fenced code, blockquotes, multiple-choice options and a pasted document after
an intro line ("Summarize this email:") are material: their "first", "tax", "class" or
"immediately" say nothing about what the request is or how urgent it is. Code is still detected on
the whole turn (a pasted block is evidence that the request is about code).
"""

from __future__ import annotations

import re

from app.routing import signals as sig

BLOCKQUOTE = re.compile(r"\n[ \t]*>[^\n]*")  # search "\n" + text: a literal start scans faster than "^"
# A quote opens after a non-word character and closes before one, so an apostrophe inside a word
# ("what's", "students'") neither opens nor closes one. (Each branch starts with its quote mark and
# looks behind it, so the regex engine can skip to quote marks: ~15 us on 3 KB, not ~150.)
QUOTED = re.compile(
    r'"(?<![\w"]")(?=[^\s"])[^"]{0,4000}+"(?<=\S")(?!\w)'
    r"|“[^”]{0,4000}+”"
    r"|«[^»]{0,4000}+»"
    r"|‘[^’\n]{0,400}+’(?!\w)"
    r"|'(?<![\w']')(?=[^\s'])[^'\n]{0,400}+'(?<=\S')(?!\w)"
)  # possessive ({m,n}+): an unclosed quote fails at once instead of backtracking
# "A. ...", "b) ...", "(C) ..." lines (MMLU-style prompts letter options up to J), matched after a
# newline: search "\n" + text (a literal start is quicker to scan for than a MULTILINE "^").
OPTION_LINE = re.compile(r"\n[ \t]*(?:\([A-Ja-j]\)|[A-Ja-j][.)])[ \t]+(\S[^\n]*)")
MATERIAL_MIN_CHARS = 200  # what follows an intro line is material only when there is this much of it
LAST_LINE_CHARS = 300  # a closing instruction after pasted material is at most this long


def own_text(raw: str) -> str:
    """``raw`` without quoted or pasted material; ``raw`` itself when nothing else is left (a turn
    that is one quotation is the request)."""
    text = drop_fences(raw)
    if ">" in text:
        text = BLOCKQUOTE.sub("", "\n" + text)[1:]
    text = drop_options(text)
    text = QUOTED.sub(" ", text)
    text = drop_material(text)
    return text if any(c.isalnum() for c in text) else raw


def drop_fences(text: str) -> str:
    """Removes ``` fenced blocks (an unclosed one runs to the end)."""
    parts, at = [], 0
    while (start := text.find("```", at)) != -1:
        parts.append(text[at:start])
        end = text.find("```", start + 3)
        at = len(text) if end == -1 else end + 3
        parts.append("\n")
    parts.append(text[at:])
    return "".join(parts)


def drop_options(text: str) -> str:
    """Removes multiple-choice options: two or more lettered lines, unless every one is itself an
    instruction ("a) Describe ...", "b) Explain ...") or a question (a sub-question keeps its line)."""
    padded = "\n" + text
    options = [m for m in OPTION_LINE.finditer(padded) if not m.group(1).rstrip().endswith("?")]
    if len(options) < 2 or all(_starts_with_instruction(m.group(1)) for m in options):
        return text
    parts, start = [], 1
    for m in options:
        parts.append(padded[start : m.start() + 1])  # keeps the newline before the option
        start = m.end()
    parts.append(padded[start:])
    return "".join(parts)


def drop_material(text: str) -> str:
    """Keeps only the intro line of "<intro>\\n<pasted material>" (and a short closing instruction
    after the material). An intro ends a sentence and points at the material: "Summarize this email:",
    "the figures below", "Here is the contract:" (not "This is a roleplay.")."""
    head, newline, rest = text.lstrip().partition("\n")
    if not newline or len(rest) < MATERIAL_MIN_CHARS or not _introduces_material(head):
        return text
    if sig.LIST_ITEM.match("\n" + rest):
        return text  # "Answer the following:\n1. ...": the list is the instruction
    last = rest.rstrip().rpartition("\n")[2].strip()
    closing = last if len(last) <= LAST_LINE_CHARS and _is_instruction(last) else ""
    return f"{head}\n{closing}"


def _introduces_material(line: str) -> bool:
    """ "... below", "the following ...", "here is ...", or "this"/"these" before a colon or before a
    kind of material ("this email", "these notes")."""
    line = line.strip()
    if line[-1:] not in ":.?!":
        return False
    words = sig.words_of(line)
    if not sig.MATERIAL_POINTERS.isdisjoint(words):
        return True
    return any(
        word in sig.MATERIAL_DEMONSTRATIVES and (line.endswith(":") or next_word in sig.MATERIAL_NOUNS)
        for word, next_word in zip(words, words[1:] + [""], strict=False)  # no words: [""] is longer
    )


def _is_instruction(line: str) -> bool:
    return line.endswith("?") or _starts_with_instruction(line)


def _starts_with_instruction(line: str) -> bool:
    first = sig.words_of(line[:40])[:1]
    return bool(first) and first[0] in sig.INSTRUCTION_STARTS
