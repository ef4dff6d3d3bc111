"""Request analysis: the task type, the seed's complexity score and the latency need."""

from __future__ import annotations

import pytest

from app.config import AutoThresholds
from app.routing.analysis import Analyzer

from .conftest import user

# The seed's Example 5 prompt, verbatim.
EXAMPLE_5 = """Analyze the following code for security vulnerabilities,
            suggest fixes, and explain the potential impact of each vulnerability
            in detail. [large code snippet...]"""

# Complexity signals by the seed's weight: high +0.3, medium +0.2, low +0.1. "deep_analysis" is ours,
# not the seed's: a second independent multi-step cue (two of the seed's high keywords, or one and
# three action verbs) is a high signal, so an explicit in-depth analysis reaches the 0.7 threshold.
SIGNAL_WEIGHTS = {
    "multi_step_reasoning": 0.3,
    "deep_analysis": 0.3,
    "code": 0.3,
    "long_context": 0.3,
    "multimodal": 0.3,
    "function_calling": 0.3,
    "multi_part_question": 0.2,
    "detailed_explanation": 0.2,
    "domain_knowledge": 0.2,
    "medium_keyword": 0.2,
    "low_keyword": 0.1,
    "simple_task": 0.1,
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def image_request(text: str = "What is in this picture?") -> dict:
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ]
    }


@pytest.fixture(scope="module")
def analyzer(config) -> Analyzer:
    return Analyzer(config.routing.thresholds)


# --- task type -------------------------------------------------------------------------------------

TASKS = [
    ("Write a Python REST API with FastAPI", "code_generation"),
    ("Implement a function that parses dates in Go", "code_generation"),
    ("Create a SQL query that returns the ten biggest customers by revenue", "code_generation"),
    ("Build a React component for a login form", "code_generation"),
    (
        "Write unit tests for this function:\n```python\ndef add(a, b):\n    return a + b\n```",
        "code_generation",
    ),
    ("Find the vulnerabilities in this code: ```python\nimport os\nos.system(input())\n```", "code_analysis"),
    ("Review this function for bugs", "code_analysis"),
    ("Analyze the following code for security vulnerabilities and suggest fixes", "code_analysis"),
    (EXAMPLE_5, "code_analysis"),
    ("Why does this crash?\n```c\nint *p = NULL; *p = 1;\n```", "code_analysis"),
    ("What does this function do?\n```js\nconst f = x => x * 2\n```", "code_analysis"),
    ("Translate this text to Spanish", "translation"),
    ("Translate 'good morning' into French", "translation"),
    ("Please translate the following paragraph to German: The meeting is at noon.", "translation"),
    ("Summarize this article in three bullet points.", "summarization"),
    ("Give me a summary of the meeting notes below.", "summarization"),
    ("TL;DR of this thread please", "summarization"),
    ("What is Kubernetes?", "simple_qa"),
    ("Who is the CEO of Google?", "simple_qa"),
    ("How many moons does Mars have?", "simple_qa"),
    ("What is a REST API?", "simple_qa"),
    ("Compare the economic policies of France and Germany and evaluate why they differ.", "analysis"),
    ("Tell me a story about a dragon.", "general"),
    ("Write a poem about the sea", "general"),
    ("Write an email to my landlord about the broken heater", "general"),
]


@pytest.mark.parametrize("text, task", TASKS, ids=[t[:40] for t, _ in TASKS])
def test_task_classification(analyzer, text, task):
    assert analyzer.analyze(user(text)).task == task


def test_task_comes_from_the_latest_user_turn(analyzer):
    body = {
        "messages": [
            {"role": "system", "content": "You are a coding assistant. Write Python code when asked."},
            {"role": "user", "content": "Write a Python REST API with FastAPI"},
            {"role": "assistant", "content": "Here it is: ..."},
            {"role": "user", "content": "Translate this text to Spanish"},
        ]
    }
    assert analyzer.analyze(body).task == "translation"


def test_task_reads_text_parts(analyzer):
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Translate this text to Spanish"}]}
        ]
    }
    assert analyzer.analyze(body).task == "translation"


# --- complexity --------------------------------------------------------------------------------------

SCORED = [
    user("What is Kubernetes?"),
    user(EXAMPLE_5),
    user("Explain step by step how TLS works, in detail."),
    user("Define entropy."),
    user("Describe the legal risks of this contract clause. Is it enforceable? Who is liable?"),
    user("Write a Python REST API with FastAPI"),
    user("Hello there"),
    {**user("What is the weather in Paris?"), "tools": [WEATHER_TOOL]},
    image_request(),
    user("Analyze in depth, step by step, the failure modes of Raft and Paxos."),
]


@pytest.mark.parametrize("body", SCORED, ids=range(len(SCORED)))
def test_score_is_the_sum_of_signal_weights_capped_at_one(analyzer, body):
    features = analyzer.analyze(body)
    assert set(features.complexity_signals) <= set(SIGNAL_WEIGHTS)
    assert len(set(features.complexity_signals)) == len(features.complexity_signals)
    expected = min(1.0, sum(SIGNAL_WEIGHTS[s] for s in features.complexity_signals))
    assert features.complexity == pytest.approx(expected)
    assert 0.0 <= features.complexity <= 1.0


SIGNALS = [
    (user("Explain step by step how TLS works"), "multi_step_reasoning"),
    (user("Give me a comprehensive analysis of the 2008 crisis"), "multi_step_reasoning"),
    (user("Review this function for bugs"), "code"),
    (user("Write a Python REST API with FastAPI"), "code"),
    ({**user("What is the weather in Paris?"), "tools": [WEATHER_TOOL]}, "function_calling"),
    (image_request(), "multimodal"),
    (user("Is this a leap year? And what about 1900?"), "multi_part_question"),
    (user("Tell me about black holes in detail"), "detailed_explanation"),
    (user("What are the tax consequences of selling my house?"), "domain_knowledge"),
    (user("Describe the water cycle"), "medium_keyword"),
    (user("Summarize this paragraph: the cat sat on the mat."), "medium_keyword"),
    (user("What is Kubernetes?"), "low_keyword"),
    (user("Define entropy"), "low_keyword"),
    (user("List the planets"), "low_keyword"),
]


@pytest.mark.parametrize("body, signal", SIGNALS, ids=[s for _, s in SIGNALS])
def test_signal_detected(analyzer, body, signal):
    features = analyzer.analyze(body)
    assert signal in features.complexity_signals
    assert features.complexity >= SIGNAL_WEIGHTS[signal]


@pytest.mark.parametrize(
    "body, signal",
    [
        (user("What is Kubernetes?"), "multi_step_reasoning"),
        (user("What is Kubernetes?"), "function_calling"),
        (user("What is Kubernetes?"), "multimodal"),
        (user("What is Kubernetes?"), "code"),
        (user("Translate this text to Spanish"), "long_context"),
    ],
)
def test_signal_absent(analyzer, body, signal):
    assert signal not in analyzer.analyze(body).complexity_signals


def test_long_context_signal_follows_the_threshold(analyzer, config):
    threshold = config.routing.thresholds.long_prompt_signal_tokens
    over = analyzer.analyze(user("Summarize this." + " hello" * (threshold + 500)))
    under = analyzer.analyze(user("Summarize this." + " hello" * (threshold - 500)))
    assert over.tokens > threshold > under.tokens
    assert "long_context" in over.complexity_signals
    assert "long_context" not in under.complexity_signals


def test_long_context_signal_threshold_is_configurable():
    low = Analyzer(AutoThresholds(long_prompt_signal_tokens=20))
    features = low.analyze(user("Translate this text to Spanish: " + "hola " * 40))
    assert "long_context" in features.complexity_signals


def test_simple_question_is_low_complexity(analyzer):
    assert analyzer.analyze(user("What is Kubernetes?")).complexity < 0.3


def test_seed_example_5_is_high_complexity(analyzer, config):
    features = analyzer.analyze(user(EXAMPLE_5))
    assert features.complexity >= config.routing.thresholds.high_complexity
    assert features.complexity >= 0.7
    assert "code" in features.complexity_signals
    assert "multi_step_reasoning" in features.complexity_signals


def test_score_is_capped_at_one(analyzer):
    features = analyzer.analyze(user(EXAMPLE_5))
    assert sum(SIGNAL_WEIGHTS[s] for s in features.complexity_signals) > 1.0
    assert features.complexity == 1.0


# --- latency need --------------------------------------------------------------------------------------

LATENCY = [
    ({**user("Tell me about Rome"), "max_latency_ms": 200}, 200),
    ({**user("Tell me about Rome"), "metadata": {"latency_ms": "250"}}, 250),  # metadata values are strings
    ({**user("Tell me about Rome"), "metadata": {"latency_ms": 400}}, 400),
]


@pytest.mark.parametrize("body, expected", LATENCY, ids=["max_latency_ms", "metadata string", "metadata int"])
def test_explicit_latency_need(analyzer, body, expected):
    assert analyzer.analyze(body).latency_ms == expected


@pytest.mark.parametrize(
    "text", ["Quick summary of this ticket", "I need this ASAP: what is DNS?", "Reply in real-time"]
)
def test_urgency_words_imply_a_latency_need(analyzer, config, text):
    need_ms = analyzer.analyze(user(text)).latency_ms
    assert need_ms is not None
    assert need_ms < config.routing.thresholds.low_latency_ms  # the need routes to the fast model


@pytest.mark.parametrize(
    "body",
    [
        user("What is Kubernetes?"),
        user("Write a Python REST API with FastAPI"),
        {**user("Tell me about Rome"), "metadata": {"latency_ms": "soon"}},
        {**user("Tell me about Rome"), "max_latency_ms": 0},
    ],
    ids=["question", "code", "unparsable metadata", "zero"],
)
def test_no_latency_need(analyzer, body):
    assert analyzer.analyze(body).latency_ms is None


def test_explicit_latency_wins_over_urgency_words(analyzer):
    assert analyzer.analyze({**user("Quick question"), "max_latency_ms": 450}).latency_ms == 450


# --- other features -------------------------------------------------------------------------------------


def test_request_fields_become_features(analyzer):
    body = {
        **image_request(),
        "tools": [WEATHER_TOOL],
        "max_completion_tokens": 300,
        "max_tokens": 999,
        "stream": True,
        "metadata": {"team": "legal"},
    }
    features = analyzer.analyze(body)
    assert features.has_images and features.multimodal
    assert features.has_tools
    assert features.max_tokens == 300  # max_completion_tokens is the newer name and wins
    assert features.stream
    assert features.metadata == {"team": "legal"}
    assert features.messages == 1
    assert features.tokens_exact


def test_legacy_functions_count_as_tools(analyzer):
    body = {**user("Weather in Paris?"), "functions": [WEATHER_TOOL["function"]]}
    assert analyzer.analyze(body).has_tools


def test_max_tokens_absent_is_none(analyzer):
    assert analyzer.analyze(user("hi")).max_tokens is None


# --- huge prompts ---------------------------------------------------------------------------------------


def test_huge_prompt_is_estimated_and_the_instruction_at_the_end_is_found(analyzer):
    paragraph = (
        "The committee met on Tuesday to review the annual figures. Revenue grew in every region, "
        "although costs rose faster in the north, where two new offices opened during the spring.\n\n"
    )
    document = paragraph * (2_000_000 // len(paragraph))
    features = analyzer.analyze(user(f"{document}\n\nSummarize the key points.", max_tokens=2000))
    assert not features.tokens_exact
    assert features.tokens > 100_000
    assert features.task == "summarization"
    assert "long_context" in features.complexity_signals
    assert features.latency_ms is None


def test_urgency_words_inside_a_pasted_document_are_not_a_latency_need():
    analyzer = Analyzer(AutoThresholds())
    document = "Intro. " * 200 + "The quick fix shipped in real-time to every region. " + "More text. " * 200
    assert analyzer.analyze(user("Please summarize this report:\n" + document)).latency_ms is None
    assert analyzer.analyze(user(document + "\nGive me a quick summary.")).latency_ms == 300


# --- misroutes: code needs code evidence ------------------------------------------------------------

CODE_TASKS = ("code_generation", "code_analysis")

NOT_CODE = [
    # "class", "function", "method", "program"... alone are school, maths or business
    "A class of 30 students took a test; 40% scored above 80. How many students scored above 80?",
    "A class of 30 students took a test; 40% scored above 80. Find how many students scored above 80.",
    "Write a lesson plan for my 5th grade class about fractions",
    "Explain the function of the liver",
    "Find the depreciation for the first two years using the straight-line method.",
    "Find a linear cost function to represent their daily costs.",
    "Use Newton's method to find the root of the function f(x) = x^2 - 2",
    "Review the program for our school concert and fix the typos",
    "Check which module of the course covers fractions",
    "Write a script for a short video about our bakery",
    "My class went to the library; find me books about dinosaurs",
    "Explain the dress code for the wedding",
    "Write an invitation to my birthday bash",
    "Review the class that takes place on Monday and fix the schedule",
    # a language named like an everyday word, out of context
    "Go to the store and buy milk, then write me a shopping list",
    "let's go! Write a poem about the sea",
    "Write a letter to Ruby about her birthday",
    "Write a song in C major",
    "Write a poem about a swift river",
]


@pytest.mark.parametrize("text", NOT_CODE, ids=[t[:40] for t in NOT_CODE])
def test_generic_nouns_and_everyday_words_are_not_code(analyzer, text):
    features = analyzer.analyze(user(text))
    assert features.task not in CODE_TASKS
    assert "code" not in features.complexity_signals


CODE = [
    ("Write a Python function that checks whether a string is a palindrome", "code_generation"),
    ("Write a function that reverses a linked list", "code_generation"),
    ("Write a function that returns the nth Fibonacci number", "code_generation"),
    ("Please write an algorithm to implement 16-bit division using 8-bit division", "code_generation"),
    ("Write a SQL query that returns the ten biggest customers", "code_generation"),
    ("Write a unit test for the login endpoint", "code_generation"),
    ("Code a basic snake game in python", "code_generation"),
    ("Review this function for bugs", "code_analysis"),
    ("The app crashes when I click save. Fix it.", "code_analysis"),
    ("Review this code and suggest fixes", "code_analysis"),
]


@pytest.mark.parametrize("text, task", CODE, ids=[t[:40] for t, _ in CODE])
def test_code_evidence_with_a_code_action_is_code(analyzer, text, task):
    features = analyzer.analyze(user(text))
    assert features.task == task
    assert "code" in features.complexity_signals


LANGUAGES_IN_CONTEXT = [
    "Implement a binary search tree in Go with insert and delete methods",
    "Write a Go program that prints the first 100 primes",
    "Write a function to compute the median in Rust",
    "Port this Python script to Kotlin",
    "Using Elixir, write a GenServer that counts requests",
    "Write a C program that reverses a string",
    "Write a Haskell function that merges two sorted lists",
    "Write a Swift class for a bank account",
    "Implement an LRU cache in Scala",
    "Create a Ruby gem that wraps the GitHub API",
    "Write an HTTP server in Zig",
]


@pytest.mark.parametrize("text", LANGUAGES_IN_CONTEXT, ids=[t[:40] for t in LANGUAGES_IN_CONTEXT])
def test_languages_named_like_words_are_code_in_context(analyzer, text):
    assert analyzer.analyze(user(text)).task == "code_generation"


def test_prose_mentioning_an_api_or_a_bug_is_translated_not_coded(analyzer):
    """The benchmark's misroute: "translate this" went to codellama because the text named an API."""
    text = (
        "The backend team will freeze the public API on Thursday so that partners can test in staging. "
        "A bug that logged some users out after a password change has been fixed. " * 3
    )
    features = analyzer.analyze(user("Translate this text to Spanish:\n" + text))
    assert features.task == "translation"
    assert "code" not in features.complexity_signals


@pytest.mark.parametrize(
    "text, task",
    [
        ("Write a Python function that translates text into Spanish", "code_generation"),
        ("Translate the comments in this Python code into English", "translation"),
    ],
)
def test_translation_to_a_natural_language_versus_code_that_translates(analyzer, text, task):
    assert analyzer.analyze(user(text)).task == task


# --- misroutes: signals come from the instruction, not from options or quoted material ---------------

AUDIT_QUESTION = """Which of the following is the auditor's responsibility?
A. First compare the ledger with the bank statements
B. Next, review the tax filings
C. Then issue an opinion on the financial statements
D. Finally prepare the company's tax return"""

POEM_QUESTION = (
    'What is the meter of this poem? "Whose woods these are I think I know. First the village, then the '
    'snow; next the horse, and finally the night."'
)


def test_answer_options_give_no_signals(analyzer):
    features = analyzer.analyze(user(AUDIT_QUESTION))
    assert features.task == "simple_qa"
    for signal in ("multi_step_reasoning", "domain_knowledge", "medium_keyword", "code"):
        assert signal not in features.complexity_signals


@pytest.mark.parametrize("labels", [("A.", "B.", "C."), ("A)", "B)", "C)"), ("(A)", "(B)", "(C)")])
def test_every_option_label_style_is_an_option(analyzer, labels):
    options = ["First compare the figures", "Then explain the tax rules", "Next, list the legal risks"]
    body = "Which step comes last in an audit?\n" + "\n".join(f"{a} {o}" for a, o in zip(labels, options))
    signals = set(analyzer.analyze(user(body)).complexity_signals)
    assert not {"multi_step_reasoning", "domain_knowledge", "medium_keyword"} & signals


@pytest.mark.parametrize(
    "text",
    [
        POEM_QUESTION,
        POEM_QUESTION.replace('"', "“", 1).replace('"', "”"),
        "What is the meter of this poem?\n> Whose woods these are I think I know.\n> First the village,"
        "\n> then the snow; next the horse, and finally the night.",
    ],
    ids=["straight quotes", "curly quotes", "blockquote"],
)
def test_quoted_material_gives_no_signals(analyzer, text):
    features = analyzer.analyze(user(text))
    assert "multi_step_reasoning" not in features.complexity_signals
    assert features.task == "simple_qa"


def test_lettered_sub_tasks_are_instructions_not_options(analyzer):
    text = "Answer the following:\na) Describe the water cycle.\nb) Explain evaporation."
    features = analyzer.analyze(user(text))
    assert "medium_keyword" in features.complexity_signals
    assert "multi_part_question" in features.complexity_signals


def test_a_pasted_email_gives_no_signals(analyzer):
    """The benchmark's misroute: "plan", "design", "next" in a pasted email scored as multi-step."""
    email = (
        "During the planning meeting the team agreed to move the mobile release by one sprint. Design will "
        "deliver the revised screens on Tuesday; first we plan, then we estimate. The backend team will "
        "freeze the public API next week, after a bug in the login flow is fixed. " * 2
    )
    features = analyzer.analyze(user("Summarize this email for me:\n" + email))
    assert features.task == "summarization"
    assert features.complexity_signals == ("medium_keyword", "simple_task")


def test_a_question_after_pasted_material_still_counts(analyzer):
    document = "Either party may end this agreement with ninety days of written notice. " * 5
    text = f"Here is the contract:\n{document}\nExplain in detail the notice clauses."
    features = analyzer.analyze(user(text))
    assert "detailed_explanation" in features.complexity_signals
    assert "medium_keyword" in features.complexity_signals


# --- misroutes: urgency comes from the request's own words ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "What does 'immediately' mean in contract law?",
        "What does “immediately” mean in contract law?",
        "What does immediately mean in contract law?",
        "Define the term real-time",
        "What is not an advantage of a hierarchy?\nA. Quick response to change\nB. Clear roles\nC. Stability",
        "Alice sold the land to Charlene, who immediately filed the deed. Who owns the land?",
        "Explain real-time operating systems",
        "What is the quick ratio?",
        "Write a legal brief about this case",
    ],
    ids=["quoted", "curly quoted", "mentioned", "term", "option", "story", "topic", "ratio", "noun"],
)
def test_urgency_words_that_are_not_about_the_answer_are_no_latency_need(analyzer, text):
    assert analyzer.analyze(user(text)).latency_ms is None


@pytest.mark.parametrize(
    "text",
    [
        "Quick question: what's the capital of France?",
        "I need this asap",
        "Keep it brief: what is DNS?",
        "Explain DNS. Please answer quickly.",
        "Briefly, what is a mutex?",
    ],
)
def test_urgency_about_the_answer_is_a_latency_need(analyzer, text):
    assert analyzer.analyze(user(text)).latency_ms == 300


# --- misroutes: explicit deep analysis is high complexity ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Analyze in depth, step by step, the consensus protocols Raft and Paxos, and give a comprehensive "
        "analysis of their failure modes.",
        "Step by step, give a comprehensive analysis of the failure modes of Raft.",
        "Provide a comprehensive analysis of the incident: identify the root cause, assess the impact and "
        "propose a remediation plan.",
    ],
)
def test_explicit_deep_analysis_reaches_the_high_threshold(analyzer, config, text):
    features = analyzer.analyze(user(text))
    assert features.complexity >= config.routing.thresholds.high_complexity
    assert {"multi_step_reasoning", "deep_analysis"} <= set(features.complexity_signals)


def test_one_high_keyword_is_not_deep_analysis(analyzer, config):
    features = analyzer.analyze(user("Explain step by step how TLS works"))
    assert "multi_step_reasoning" in features.complexity_signals
    assert "deep_analysis" not in features.complexity_signals
    assert features.complexity < config.routing.thresholds.high_complexity


def test_everyday_nouns_are_not_action_verbs(analyzer):
    text = "What is the plan for the next design review, and who gave the estimate?"
    features = analyzer.analyze(user(text))
    assert "multi_step_reasoning" not in features.complexity_signals


def test_action_verbs_that_open_clauses_are_multi_step(analyzer):
    text = "Plan a 3-day trip to Rome, then design an itinerary and estimate the costs"
    features = analyzer.analyze(user(text))
    assert "multi_step_reasoning" in features.complexity_signals
