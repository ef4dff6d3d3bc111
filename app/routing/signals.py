"""Text signals the analysis looks for: the routing guide's complexity keywords and task cues.

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


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


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

    # Set operations go through ``first_at.keys()``, so they cost the size of ``keys``, not of the text.
    def has(self, keys: frozenset[str]) -> bool:
        return not self.first_at.keys().isdisjoint(keys)

    def found(self, keys: frozenset[str]) -> set[str]:
        return self.first_at.keys() & keys

    def first(self, keys: frozenset[str]) -> int | None:
        positions = [self.first_at[k] for k in self.first_at.keys() & keys]
        return min(positions) if positions else None

    def starts_with(self, keys: frozenset[str]) -> bool:
        head = self.words[:2]
        return bool(head) and (head[0] in keys or " ".join(head) in keys)

    def positions(self, word: str) -> list[int]:
        """Every position of a one-word key."""
        return _positions(self.words, word, self.first_at[word]) if word in self.first_at else []

    def around(self, key: str) -> tuple[str, str]:
        """The words just before and just after the first occurrence of ``key``."""
        at = self.first_at[key]
        end = at + key.count(" ") + 1
        return (self.words[at - 1] if at else "", self.words[end] if end < len(self.words) else "")


def _positions(words: tuple[str, ...], word: str, first: int) -> list[int]:
    """Every position of ``word``, the first being ``first`` (a C-speed ``index`` per occurrence)."""
    out = [first]
    while True:
        try:
            out.append(words.index(word, out[-1] + 1))
        except ValueError:
            return out


# The routing guide's keyword lists, and close relatives.
HIGH_KEYWORDS = phrases(
    "analyze in depth",
    "analyse in depth",
    "in-depth analysis",
    "comprehensive analysis",
    "step by step",
    "step-by-step",
    "think through",
    "reason through",
    "prove",
    "derive",
    "trade-off",
    "trade-offs",
    "tradeoff",
    "tradeoffs",
)
# Spellings of one high keyword, so that "step by step ... step-by-step" is one cue, not two.
HIGH_KEYWORD_SPELLINGS = {
    "analyse in depth": "analyze in depth",
    "step-by-step": "step by step",
    "trade-offs": "trade-off",
    "tradeoff": "trade-off",
    "tradeoffs": "trade-off",
}
MEDIUM_KEYWORDS = phrases("explain", "describe", "summarize", "summarise", "compare", "contrast")
LOW_KEYWORDS = phrases("what is", "what's", "who is", "define", "list", "when was", "when did")
DETAILED = phrases(
    "in detail",
    "detailed",
    "thorough",
    "thoroughly",
    "elaborate",
    "in depth",
    "in-depth",
    "extensive",
    "extensively",
    "comprehensive",
    "comprehensively",
)
DOMAIN = phrases(
    "legal",
    "lawsuit",
    "statute",
    "liability",
    "medical",
    "clinical",
    "diagnosis",
    "diagnose",
    "pharmacology",
    "dosage",
    "financial",
    "tax",
    "taxes",
    "taxation",
    "accounting",
    "regulation",
    "regulatory",
    "compliance",
    "security",
    "vulnerability",
    "vulnerabilities",
    "exploit",
    "cryptography",
    "cryptographic",
    "genomic",
    "genomics",
    "quantum",
    "actuarial",
)
# Distinct action verbs: three or more in one request means a multi-step task.
ACTION_VERBS = phrases(
    "analyze",
    "analyse",
    "suggest",
    "explain",
    "compare",
    "evaluate",
    "design",
    "propose",
    "identify",
    "assess",
    "recommend",
    "implement",
    "justify",
    "critique",
    "plan",
    "prioritize",
    "estimate",
    "summarize",
    "list",
)
# Everyday nouns too ("a remediation plan", "the next release"): they count only where a clause
# starts ("Plan the rollout", "..., then estimate the cost").
AMBIGUOUS_ACTION_VERBS = phrases("design", "plan", "estimate", "list")
SEQUENCE = phrases(
    "first", "firstly", "then", "next", "finally", "afterwards", "second", "secondly", "lastly"
)
# Words that may open a clause before its verb: ", and then design ...", ". Please explain ...".
CLAUSE_OPENERS = SEQUENCE | phrases("and", "also", "please", "so", "now", "or")

CODE_GENERATION_VERBS = phrases(
    "write",
    "create",
    "implement",
    "build",
    "generate",
    "make",
    "scaffold",
    "develop",
    "code up",
    "port",
    "convert",
    "translate",
)
CODE_ANALYSIS_VERBS = phrases(
    "analyze",
    "analyse",
    "review",
    "audit",
    "debug",
    "find",
    "fix",
    "explain",
    "refactor",
    "optimize",
    "optimise",
    "what does",
    "why does",
    "identify",
    "check",
    "inspect",
    "assess",
)
# Code evidence. Strong cues are code on their own: programming languages whose names are not
# everyday words, and nouns that only software has. (Languages named like everyday words, "Go",
# "Rust", "C", are in code_cues.py: they count only in context, "in Go", "a Rust crate".)
CODE_STRONG = phrases(
    "python",
    "python3",
    "javascript",
    "typescript",
    "golang",
    "c++",
    "c#",
    "f#",
    "c11",
    "c99",
    "c17",
    "kotlin",
    "php",
    "perl",
    "lua",
    "zig",
    "clojure",
    "erlang",
    "ocaml",
    "fortran",
    "cobol",
    "prolog",
    "matlab",
    "verilog",
    "vhdl",
    "powershell",
    "zsh",
    "sql",
    "mysql",
    "postgresql",
    "sqlite",
    "html",
    "css",
    "jquery",
    "nodejs",
    "reactjs",
    "vuejs",
    "nextjs",
    "cuda",
    "glsl",
    "solidity",
    "objective-c",
    "numpy",
    "pytorch",
    "tensorflow",
    "pyplot",
    "matplotlib",
    "django",
    "fastapi",
    "terraform",
    "kubectl",
    "dockerfile",
    "docker-compose",
    "helm chart",
    "shell script",
    "bash script",
    "source code",
    "codebase",
    "regex",
    "regexp",
    "regular expression",
    "sql query",
    "unit test",
    "unit tests",
    "stack trace",
    "stacktrace",
    "traceback",
    "segfault",
    "segmentation fault",
    "null pointer",
    "api endpoint",
    "rest api",
    "graphql",
    "linked list",
    "binary search tree",
    "binary tree",
    "hash map",
    "hashmap",
    "hash table",
    "dataframe",
    "json schema",
    "microservice",
    "microservices",
    "struct",
    "pull request",
    "leetcode",
    "arduino",
)
# A line of code: matched after a newline, so search "\n" + text (see ``has_code_syntax``).
CODE_MARKERS = re.compile(
    r"\n[ \t\r\f\v]*"
    r"(?:def |class |import |from \S+ import |function |const |let |var |public |#include|package )"
)
# Weak cues: nouns that software shares with school, maths and business ("class", "function",
# "library", "program"). One is code only with a second cue nearby (see code_cues.py).
CODE_WEAK = phrases(
    "code",
    "function",
    "functions",
    "method",
    "methods",
    "class",
    "classes",
    "library",
    "libraries",
    "program",
    "programs",
    "module",
    "modules",
    "component",
    "components",
    "algorithm",
    "algorithms",
    "query",
    "queries",
    "script",
    "scripts",
)
# Cues that lean to software; one next to a weak noun (or to another of these) is code:
# "this function ... bugs", "the app crashes".
CODE_TECH = phrases(
    "api",
    "apis",
    "endpoint",
    "endpoints",
    "bug",
    "bugs",
    "snippet",
    "snippets",
    "cli",
    "sdk",
    "backend",
    "frontend",
    "repo",
    "app",
    "apps",
    "webapp",
    "plugin",
    "debug",
    "debugging",
    "refactor",
    "recursion",
    "recursive",
    "runtime",
    "compiler",
    "syntax",
    "crash",
    "crashes",
    "deploy",
    "flutter",
    "tailwind",
    "pandas",
    "npm",
    "git",
    "github",
)
# "write a program", "implement an algorithm": a weak noun as the object of these verbs is code.
CODE_OBJECT_VERBS = phrases("write", "implement", "code", "refactor", "debug", "compile", "rewrite")
# Nouns that are code as the object of "write"/"implement". Not "function" ("write a function that
# models the population" is algebra), "script" (a film has one) or "program" (a government
# implements one, a concert prints one): those need code doing ("a program that prints ...").
CODE_OBJECTS = phrases(
    "class",
    "classes",
    "method",
    "methods",
    "module",
    "modules",
    "library",
    "libraries",
    "component",
    "components",
    "algorithm",
    "algorithms",
    "query",
    "queries",
    "api",
    "endpoint",
    "cli",
    "app",
)
# Words between such a verb and its object: "write me a simple program".
OBJECT_FILLERS = phrases(
    "a",
    "an",
    "the",
    "this",
    "that",
    "my",
    "our",
    "your",
    "some",
    "me",
    "us",
    "new",
    "simple",
    "small",
    "short",
    "basic",
    "generic",
    "helper",
    "custom",
    "complete",
    "full",
    "working",
    "efficient",
    "minimal",
    "sample",
    "example",
    "quick",
    "piece",
    "of",
)
# "a function that reverses ...", "a method to parse ...": what code does, said of one of these
# nouns (not "class": "the class that takes place on Monday").
DOING_NOUNS = phrases(
    "function",
    "functions",
    "method",
    "methods",
    "program",
    "programs",
    "script",
    "scripts",
    "algorithm",
    "algorithms",
    "module",
    "modules",
    "query",
    "queries",
)
CODE_DOING = phrases(
    "return",
    "returns",
    "reverse",
    "reverses",
    "parse",
    "parses",
    "sort",
    "sorts",
    "print",
    "prints",
    "read",
    "reads",
    "validate",
    "validates",
    "convert",
    "converts",
    "fetch",
    "fetches",
    "load",
    "loads",
    "merge",
    "merges",
    "filter",
    "filters",
    "split",
    "splits",
    "take",
    "takes",
    "accept",
    "accepts",
    "handle",
    "handles",
    "call",
    "calls",
    "retry",
    "retries",
    "deduplicate",
    "deduplicates",
    "output",
    "outputs",
    "implement",
    "implements",
    "swap",
    "swaps",
    "encode",
    "encodes",
    "decode",
    "decodes",
    "emit",
    "emits",
    "serialize",
    "serializes",
    "render",
    "renders",
)  # not "compute", "find": "a method to find the root" is maths
# Before "code": other codes ("dress code", "zip code"); after: "code of conduct", "code red".
NOT_SOFTWARE_CODE_BEFORE = phrases(
    "dress",
    "zip",
    "postal",
    "post",
    "area",
    "country",
    "tax",
    "penal",
    "civil",
    "criminal",
    "building",
    "morse",
    "qr",
    "bar",
    "promo",
    "discount",
    "coupon",
    "access",
    "genetic",
    "dna",
    "color",
    "colour",
    "moral",
    "honor",
    "honour",
    "ethical",
    "vinci",
    "secret",
    "cheat",
    "airport",
    "zip-code",
)
NOT_SOFTWARE_CODE_AFTER = phrases("of", "red", "blue", "black", "word", "words", "name", "names")

LANGUAGES = phrases(
    "english",
    "spanish",
    "french",
    "german",
    "italian",
    "portuguese",
    "chinese",
    "japanese",
    "korean",
    "arabic",
    "russian",
    "hindi",
    "dutch",
)
TRANSLATION = phrases("translate", "translation", "translating") | {f"into {lang}" for lang in LANGUAGES}
# A natural language as the target: a translation, even of code comments.
NATURAL_TARGETS = frozenset(f"{prep} {lang}" for prep in ("into", "to", "in") for lang in LANGUAGES)
SUMMARIZATION = phrases(
    "summarize", "summarise", "summary", "tl dr", "tldr", "key points", "recap", "condense", "gist"
)
QUESTION_START = phrases(
    "what",
    "who",
    "when",
    "where",
    "which",
    "how many",
    "how much",
    "how old",
    "how far",
    "how long",
    "is",
    "are",
    "does",
    "do",
    "define",
    "list",
)
ANALYSIS = phrases("analyze", "analyse", "analysis", "evaluate", "assess", "compare", "why", "critique")

URGENT = phrases(
    "quick",
    "quickly",
    "asap",
    "immediately",
    "right now",
    "right away",
    "real-time",
    "realtime",
    "real time",
    "instant",
    "instantly",
    "urgent",
    "urgently",
    "brief",
    "briefly",
    "tl dr",
    "tldr",
)
# Urgency words that name a topic unless they describe the answer: "explain real-time scheduling",
# "the quick ratio", "a legal brief" say nothing of how fast to reply.
URGENT_IF_ABOUT_THE_ANSWER = phrases("real-time", "realtime", "real time", "instant", "brief")
ANSWER_NOUNS = phrases(
    "answer",
    "answers",
    "reply",
    "replies",
    "response",
    "responses",
    "summary",
    "overview",
    "explanation",
    "description",
    "note",
    "recap",
    "rundown",
    "feedback",
    "one",
    "question",
    "status",
    "update",
    "look",
    "take",
    "version",
    "please",
)
ANSWER_MANNER_BEFORE = phrases("in", "be", "keep", "it", "very", "short", "and", "reply", "respond", "answer")
QUICK_TOPICS = phrases("sort", "ratio", "asset", "assets", "sand", "lime", "brown", "bread", "silver", "fox")
# Adverbs that a story uses too ("the police immediately left", "then quickly transferred"): they are
# about the answer only after words like these ("answer quickly", "I need this immediately").
URGENT_ADVERBS = phrases("quickly", "immediately", "instantly", "urgently")
URGENT_ADVERB_AFTER = phrases(
    "answer",
    "reply",
    "respond",
    "need",
    "this",
    "it",
    "me",
    "please",
    "tell",
    "explain",
    "summarize",
    "help",
    "you",
    "so",
    "do",
    "write",
    "give",
    "get",
    "back",
    "done",
    "that",
    "one",
    "work",
)
# A word mentioned rather than used: "what does immediately mean", "the term real-time".
MENTIONED_AFTER = phrases("does", "word", "term", "phrase", "define", "defining", "adverb", "adjective")

# Words that point at pasted material: "the report below", "here is the contract:", "summarize this
# email:" ("this"/"these" only before a colon or before a kind of material: "This is a roleplay" is not).
MATERIAL_POINTERS = phrases("following", "below", "attached", "here", "here's")
MATERIAL_DEMONSTRATIVES = phrases("this", "these")
MATERIAL_NOUNS = phrases(
    "text",
    "texts",
    "email",
    "emails",
    "article",
    "ticket",
    "thread",
    "document",
    "report",
    "passage",
    "paragraph",
    "paragraphs",
    "poem",
    "story",
    "essay",
    "letter",
    "message",
    "messages",
    "transcript",
    "contract",
    "note",
    "notes",
    "review",
    "post",
    "excerpt",
    "incident",
    "log",
    "logs",
    "chat",
    "conversation",
    "data",
    "table",
    "abstract",
    "page",
    "file",
    "sentence",
    "sentences",
    "quote",
    "speech",
    "memo",
    "minutes",
    "statement",
    "content",
    "draft",
    "proposal",
    "code",
    "snippet",
    "script",
    "lyrics",
    "song",
    "chapter",
    "feedback",
    "comment",
    "comments",
    "description",
    "recipe",
)
# A line that starts with one of these is an instruction, not material or an answer option.
INSTRUCTION_STARTS = (
    ACTION_VERBS
    | MEDIUM_KEYWORDS
    | CODE_GENERATION_VERBS
    | CODE_ANALYSIS_VERBS
    | SUMMARIZATION
    | phrases(
        "what",
        "who",
        "when",
        "where",
        "which",
        "why",
        "how",
        "please",
        "now",
        "then",
        "also",
        "give",
        "tell",
        "provide",
        "show",
        "discuss",
        "calculate",
        "solve",
        "determine",
        "outline",
        "state",
        "name",
        "answer",
        "rewrite",
        "extract",
        "use",
        "using",
        "based",
        "given",
        "can",
        "could",
        "would",
        "do",
        "does",
        "is",
        "are",
        "should",
        "draft",
    )
)

_PHRASE_STARTS = frozenset(
    phrase.split(" ")[0]
    for group in (
        HIGH_KEYWORDS,
        MEDIUM_KEYWORDS,
        LOW_KEYWORDS,
        DETAILED,
        DOMAIN,
        ACTION_VERBS,
        SEQUENCE,
        CODE_GENERATION_VERBS,
        CODE_ANALYSIS_VERBS,
        CODE_STRONG,
        TRANSLATION,
        NATURAL_TARGETS,
        SUMMARIZATION,
        QUESTION_START,
        ANALYSIS,
        URGENT,
    )
    for phrase in group
    if " " in phrase
)
# Numbered, bulleted or lettered lines ("a) ..."; answer options are gone from a turn's own words).
# Search "\n" + text: a literal start scans faster than a MULTILINE "^".
LIST_ITEM = re.compile(r"\n\s*(?:\d+[.)]|\(?[A-Ja-j]\)|[A-Ja-j][.)]|[-*•])\s+\S")


def has_code_syntax(text: str) -> bool:
    """A code block or a line that starts like code ("def ", "import ", "#include"...)."""
    return "```" in text or CODE_MARKERS.search("\n" + text) is not None
