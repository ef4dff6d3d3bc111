"""Anthropic prompt caching: ``cache_control`` breakpoints on long stable prefixes. Pure, no I/O.

Anthropic caches the prefix of a request (tools, then system, then messages) up to each block
marked ``cache_control: {"type": "ephemeral"}``, at most ``MAX_BREAKPOINTS`` of them per request.
``place_breakpoints`` marks, in this order of priority and while breakpoints are left:

1. the last tool, when the tools alone reach the model's minimum cacheable length;
2. the last system block, when tools plus system reach it;
3. the last block of each long early user turn (``LONG_TURN_TOKENS`` or more of its own, not the
   last turn), and in the last turn, when it is the user's, its last long block that is not its
   final block (a document before the question: the translator merges a document message and a
   question message into one turn, and a message may hold both as content parts), longest first
   (a turn by its size, the last turn's block by the size of the blocks up to it), when the prefix
   up to it reaches the minimum.

Breakpoints the client set are never moved or removed and count against the four. Clients set
them as they would with Anthropic through an OpenAI-shaped API: ``cache_control`` on a content
part, on a whole message (its last block), or on a tool; the router's request models keep unknown
fields, and the translator carries these over (``carry``). Lengths are estimates (characters / 4,
``prompt_cache.estimate_tokens``); a prefix the API finds too short is simply not cached (no error).
"""

from __future__ import annotations

from app.backends.prompt_cache import LONG_TURN_TOKENS, estimate_tokens
from app.openai_wire import Json

MAX_BREAKPOINTS = 4
EPHEMERAL = {"type": "ephemeral"}


def carry(source: Json, block: Json) -> Json:
    """``block`` with the client's ``cache_control`` from ``source`` (a content part, a message, a
    tool), when it set one."""
    control = source.get("cache_control")
    if isinstance(control, dict):
        block["cache_control"] = dict(control)
    return block


def count_breakpoints(kwargs: Json) -> int:
    """Blocks already marked ``cache_control`` in tools, system and messages."""
    system = kwargs.get("system")
    blocks = [*(kwargs.get("tools") or []), *(system if isinstance(system, list) else [])]
    for turn in kwargs.get("messages") or []:
        content = turn.get("content")
        blocks += content if isinstance(content, list) else []
    return sum(1 for block in blocks if isinstance(block, dict) and "cache_control" in block)


def place_breakpoints(kwargs: Json, min_tokens: int) -> None:
    """Marks long stable prefixes in ``messages.create`` kwargs, in place (see the module notes).
    ``system`` must be a list of text blocks here; the caller turns an unmarked one back into text."""
    left = MAX_BREAKPOINTS - count_breakpoints(kwargs)
    if left <= 0:
        return
    candidates: list[Json] = []
    tools: list[Json] = kwargs.get("tools") or []
    prefix = estimate_tokens(tools)
    if tools and prefix >= min_tokens:
        candidates.append(tools[-1])
    system: list[Json] = kwargs.get("system") or []
    prefix += estimate_tokens(system)
    if system and prefix >= min_tokens:
        candidates.append(system[-1])
    candidates += _long_turns(kwargs.get("messages") or [], prefix, min_tokens)
    for block in candidates:
        if left <= 0:
            break
        if "cache_control" not in block:
            block["cache_control"] = dict(EPHEMERAL)
            left -= 1


def _long_turns(turns: list[Json], prefix: int, min_tokens: int) -> list[Json]:
    """The breakpoint blocks of step 3 (see the module notes) whose prefix reaches ``min_tokens``,
    longest first."""
    found: list[tuple[int, int, Json]] = []
    for i, turn in enumerate(turns):
        content = turn.get("content")
        blocks: list[Json] = content if turn.get("role") == "user" and isinstance(content, list) else []
        if i == len(turns) - 1:
            found += _leading_document(blocks, prefix, min_tokens, -i)
            break
        size = estimate_tokens(content)
        prefix += size
        if blocks and size >= LONG_TURN_TOKENS and prefix >= min_tokens:
            found.append((size, -i, blocks[-1]))
    return [block for _, _, block in sorted(found, key=lambda f: (f[0], f[1]), reverse=True)]


def _leading_document(
    blocks: list[Json], prefix: int, min_tokens: int, order: int
) -> list[tuple[int, int, Json]]:
    """The last turn's last long block before its final one, sized by the blocks up to it."""
    found: list[tuple[int, int, Json]] = []
    size = 0
    for block in blocks[:-1]:
        own = estimate_tokens(block)
        size += own
        if own >= LONG_TURN_TOKENS and prefix + size >= min_tokens:
            found = [(size, order, block)]
    return found


def finish_system(kwargs: Json) -> None:
    """``system`` back to one string when no block of it is marked (the usual, plainer form)."""
    system = kwargs.get("system")
    if not system:
        kwargs.pop("system", None)
    elif not any("cache_control" in block for block in system):
        kwargs["system"] = "\n\n".join(block["text"] for block in system)
