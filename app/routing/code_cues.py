"""Code evidence: whether a request's own words are about software.

A request is a code task only with evidence that it is about code (and a code action, see
``analysis.classify_task``). Evidence is one of:

- a strong cue: code syntax or a code block in the turn, a language whose name is no everyday word
  ("Python", "TypeScript"), a noun only software has ("regex", "stack trace", "linked list");
- a language named like an everyday word, in context: "in Go", "using Rust", "a C program"
  ("Go to the store" and "let's go" are not code);
- a weak noun ("function", "class", "library", "program") with a second cue: a software word near
  it ("review this function for bugs"), a code verb on it ("write a program"), or code doing
  ("a function that reverses a list"). Alone it is maths, school or business: "a class of 30
  students", "the function of the liver".
"""

from __future__ import annotations

import re

from app.routing import signals as sig

NEAR = 4  # words either side of a weak noun in which a second cue counts
VERB_REACH = 3  # words from a code verb to its object ("write me a simple program")

# Languages named like everyday words count in context: after "in"/"using"/"into", or before a code
# noun ("a Rust crate", "a C program"). Capitalized names count only as written ("in Go", not "let's
# go"; "Spring" the framework, not "a spring project"); the others in any case ("in rust", "a c
# program"). A name must end there: "in C#" is C#, "in C major" is music, "R&D" is not R.
_CAPITALIZED = (
    "Go|C|R|Elm|Crystal|Nim|Scheme|Racket|Lisp|Forth|Pascal|Ada|Assembly|React|Angular|Vue|Rails|Node|"
    "Flask|Spring|Elixir|Scala|Haskell"
)
_ANY_CASE = "bash|rust|ruby|java|julia|dart|swift"
_CODE_AFTER = (
    "code|program|programs|programming|function|functions|class|classes|method|methods|script|scripts|"
    "library|libraries|module|modules|package|packages|crate|crates|gem|gems|app|api|snippet|struct|"
    "trait|compiler|developer|programmer|language|component|components"
)
LANGUAGE_IN_CONTEXT = re.compile(
    rf"\b(?i:in|using|into)\s+(?:{_CAPITALIZED}|(?i:{_ANY_CASE}))(?![\w#+&'’-])"
    r"(?!\s+(?i:major|minor|sharp|flat)\b)"
    rf"|\b(?:{_CAPITALIZED}|(?i:{_ANY_CASE}|c|r))\s+(?i:{_CODE_AFTER})\b"
)
_LANGUAGE_WORDS = frozenset(_CAPITALIZED.lower().split("|") + _ANY_CASE.split("|"))
_CONTEXT_WORDS = sig.CODE_WEAK | sig.CODE_TECH


def code_evidence(text: sig.Text, own: str) -> bool:
    """Whether the request's own words (``own``, read as ``text``) are about code."""
    return (
        text.has(sig.CODE_STRONG)
        or (text.has(_LANGUAGE_WORDS) and LANGUAGE_IN_CONTEXT.search(own) is not None)
        or weak_cues_in_context(text)
    )


def weak_cues_in_context(text: sig.Text) -> bool:
    """A weak noun with a second cue, or two different software words close together."""
    words = text.words
    for word in text.found(_CONTEXT_WORDS):
        weak, tech = word in sig.CODE_WEAK, word in sig.CODE_TECH
        for i in text.positions(word):
            if (weak and _weak_noun_is_code(words, i)) or (tech and _tech_word_nearby(words, i)):
                return True
    return False


def _weak_noun_is_code(words: tuple[str, ...], i: int) -> bool:
    word = words[i]
    if word == "code":  # software's, unless another kind: "dress code", "code of conduct"
        before = words[i - 1] if i else ""
        after = words[i + 1] if i + 1 < len(words) else ""
        return before not in sig.NOT_SOFTWARE_CODE_BEFORE and after not in sig.NOT_SOFTWARE_CODE_AFTER
    return _tech_word_nearby(words, i) or _is_code_object(words, i) or _does_code(words, i)


def _tech_word_nearby(words: tuple[str, ...], i: int) -> bool:
    """A software word within ``NEAR`` words of ``words[i]`` (another one, not the same word again)."""
    stem = _stem(words[i])
    for other in words[max(0, i - NEAR) : i + NEAR + 1]:
        if other in sig.CODE_TECH and _stem(other) != stem:
            return True
    return False


def _is_code_object(words: tuple[str, ...], i: int) -> bool:
    """ "write a program", "implement the algorithm": the noun is the object of a code verb."""
    if words[i] not in sig.CODE_OBJECTS:
        return False
    for j in range(i - 1, max(-1, i - 1 - VERB_REACH), -1):
        if words[j] in sig.CODE_OBJECT_VERBS:
            return True
        if words[j] not in sig.OBJECT_FILLERS:
            return False
    return False


def _does_code(words: tuple[str, ...], i: int) -> bool:
    """ "a function that reverses", "a method to parse": what code does, said of the noun."""
    if words[i] not in sig.DOING_NOUNS:
        return False
    link, verb = words[i + 1 : i + 2], words[i + 2 : i + 3]
    return link in (("that",), ("which",), ("to",)) and bool(verb) and verb[0] in sig.CODE_DOING


def _stem(word: str) -> str:
    return word.rstrip("s")[:5]
