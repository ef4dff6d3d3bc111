"""JSON Schema as a character-level recognizer that always knows its shortest way to the end.

``compile_schema`` turns a JSON Schema (the subset below) into a ``Grammar``; a ``Grammar``
steps over characters (``advance``) through states that say whether the JSON is complete and
how many characters, at the least, still complete it (``min_close``). The CPU engine's
constrained decoder (``app.engine.constrained``) runs it over token texts to mask the logits, and
uses ``min_close`` to keep enough of the token budget to close the document: the output is always
a complete JSON value that the schema accepts.

Supported: ``type`` (one or a list), ``properties`` / ``required`` / ``additionalProperties``,
``items`` / ``minItems`` / ``maxItems``, ``minLength`` / ``maxLength``, ``enum``, ``const``,
``anyOf`` / ``oneOf`` (both as any-of), a one-element ``allOf``, ``$ref`` to ``#``, ``#/$defs/...``
or ``#/definitions/...`` (recursion included), ``nullable``, and annotations (``title``,
``description``, ``default``, ``examples``...). Objects with ``properties`` are written with the
properties in the schema's order, optional ones possibly left out; objects without them (and
``{"type": "object"}``, JSON mode) take any string keys. Keywords that assert what cannot be
enforced here (``pattern``, ``format``, ``minimum``, ``multipleOf``, ``uniqueItems``...) raise
``SchemaError`` in strict mode; lenient mode (tool arguments without ``strict``, which OpenAI
does not guarantee either) enforces the structure and skips those assertions.

States are immutable (tuples), so a decoder can cache per state. Whitespace between tokens is
allowed, at most ``MAX_WS`` characters in a row (a model cannot stall in whitespace forever).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

INF = 10**9
MAX_WS = 24
MAX_STACKS = 64  # alternatives kept at once (any-of); more are dropped, which only narrows the output
WS = frozenset(" \t\n\r")
HEX = frozenset("0123456789abcdefABCDEF")
DIGITS = frozenset("0123456789")
ESCAPES = frozenset('"\\/bfnrt')

ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "example", "$schema", "$id", "$comment", "deprecated",
    "readOnly", "writeOnly", "$defs", "definitions", "discriminator", "strict", "additionalItems",
})  # fmt: skip
# Assertions this recognizer cannot enforce: refused in strict mode, skipped in lenient mode.
UNENFORCEABLE = frozenset({
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "uniqueItems", "contains", "minContains", "maxContains", "patternProperties", "propertyNames",
    "minProperties", "maxProperties", "dependentRequired", "dependentSchemas", "dependencies", "if", "then",
    "else", "not", "prefixItems", "unevaluatedProperties", "unevaluatedItems", "contentEncoding",
    "contentMediaType",
})  # fmt: skip
STRUCTURAL = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength",
    "maxLength", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "nullable",
})  # fmt: skip

# Node kinds.
STR, NUM, INT, BOOL, NULL, LIT, OBJ, FREE, ARR, UNION = range(10)
# Frame kinds (the first item of each frame tuple).
V, S, N, L, OB, F, A = "V", "S", "N", "L", "O", "F", "A"
# Object / array phases.
START, AFTER, COMMA, KEY, COLON = range(5)
# Number phases; the accepting ones may end the number.
SIGN, ZERO, INTP, DOT, FRAC, EXP, EXPS, EXPD = range(8)
ACCEPTING = frozenset({ZERO, INTP, FRAC, EXPD})


class SchemaError(ValueError):
    """The schema uses something this recognizer cannot enforce (the message says what)."""


@dataclass
class Node:
    kind: int
    lo: int = 0  # minLength / minItems
    hi: int = INF  # maxLength / maxItems
    alts: tuple = ()  # LIT: serialized values; UNION: node ids
    props: tuple = ()  # OBJ: (key literal, node id, required) in schema order
    child: int = -1  # ARR: items; FREE: the values' node, -1 for no keys at all


@dataclass
class Grammar:
    nodes: list[Node]
    root: int
    min_len: list[int] = field(default_factory=list)
    rest: dict[int, tuple[int, ...]] = field(default_factory=dict)  # OBJ: cost of required props from i on

    # --- states ---------------------------------------------------------------------------
    def initial(self) -> frozenset:
        """Before the document: it starts at once, with no whitespace."""
        return frozenset({((V, self.root, MAX_WS),)})

    def advance(self, state: frozenset, text: str) -> frozenset:
        """The state after ``text``; empty when ``text`` cannot continue a valid document."""
        for ch in text:
            nxt: set = set()
            for stack in state:
                nxt.update(self.step(stack, ch))
            if not nxt:
                return frozenset()
            if len(nxt) > MAX_STACKS:
                nxt = set(sorted(nxt, key=self.stack_close)[:MAX_STACKS])
            state = frozenset(nxt)
        return state

    def complete(self, state: frozenset) -> bool:
        """The text so far is a whole document (a number may still go on)."""
        return any(not s or (len(s) == 1 and s[0][0] == N and s[0][2] in ACCEPTING) for s in state)

    def closed(self, state: frozenset) -> bool:
        """The document is complete and nothing more can be added."""
        return bool(state) and all(not s for s in state)

    def min_close(self, state: frozenset) -> int:
        """The fewest characters that complete the document from ``state``."""
        return min((self.stack_close(s) for s in state), default=INF)

    def stack_close(self, stack: tuple) -> int:
        return sum(self._frame_close(f) for f in stack)

    def shortest(self, state: frozenset) -> str:
        """The shortest text that completes the document from ``state``."""
        alphabet = self.__dict__.get("_alphabet")
        if alphabet is None:
            chars = set('"}],:0[{-a') | {
                c for n in self.nodes for a in n.alts if isinstance(a, str) for c in a
            }
            chars |= {c for n in self.nodes for key, _, _ in n.props for c in key}
            alphabet = self.__dict__["_alphabet"] = sorted(chars)
        out: list[str] = []
        while not (self.complete(state) and self.min_close(state) == 0):
            need = self.min_close(state)
            ch, state = next(
                (ch, nxt)
                for ch in alphabet
                if (nxt := self.advance(state, ch)) and self.min_close(nxt) == need - 1
            )
            out.append(ch)
        return "".join(out)

    # --- stepping -------------------------------------------------------------------------
    def step(self, stack: tuple, ch: str) -> list[tuple]:
        if not stack:
            return []
        top, rest = stack[-1], stack[:-1]
        kind = top[0]
        if kind == V:
            if ch in WS:
                return [rest + ((V, top[1], top[2] + 1),)] if top[2] < MAX_WS else []
            return self._start(rest, top[1], ch)
        if kind == S:
            return self._string(rest, top, ch)
        if kind == N:
            return self._number(rest, top, ch)
        if kind == L:
            return self._literal(rest, top, ch)
        if kind == OB:
            return self._object(rest, top, ch)
        if kind == F:
            return self._free(rest, top, ch)
        return self._array(rest, top, ch)

    def _start(self, rest: tuple, nid: int, ch: str) -> list[tuple]:
        """A value of node ``nid`` beginning with ``ch``."""
        node = self.nodes[nid]
        kind = node.kind
        if kind == UNION:
            out: list[tuple] = []
            for alt in node.alts:
                out.extend(self._start(rest, alt, ch))
            return out
        if kind == STR:
            return [rest + ((S, nid, 0, 0),)] if ch == '"' else []
        if kind in (NUM, INT):
            integer = kind == INT
            if ch == "-":
                return [rest + ((N, integer, SIGN),)]
            if ch == "0":
                return [rest + ((N, integer, ZERO),)]
            if ch in DIGITS:
                return [rest + ((N, integer, INTP),)]
            return []
        if kind in (LIT, BOOL, NULL):
            alts = node.alts if kind == LIT else (("true", "false") if kind == BOOL else ("null",))
            return self._literal(rest, (L, alts, 0), ch)
        if kind == OBJ:
            return [rest + ((OB, nid, 0, START, 0, None),)] if ch == "{" else []
        if kind == FREE:
            return [rest + ((F, nid, START, 0),)] if ch == "{" else []
        return [rest + ((A, nid, 0, START, 0),)] if ch == "[" else []

    def _string(self, rest: tuple, top: tuple, ch: str) -> list[tuple]:
        _, nid, n, esc = top
        node = self.nodes[nid] if nid >= 0 else None
        lo, hi = (node.lo, node.hi) if node is not None else (0, INF)
        counted = lo > 0 or hi < INF  # only count characters when a limit needs it (caches better)
        if esc == -1:
            if ch in ESCAPES:
                return [rest + ((S, nid, n + counted, 0),)]
            return [rest + ((S, nid, n, 4),)] if ch == "u" else []
        if esc > 0:
            if ch not in HEX:
                return []
            return [rest + ((S, nid, n + counted, 0) if esc == 1 else (S, nid, n, esc - 1),)]
        if ch == '"':
            return [rest] if n >= lo else []
        if ord(ch) < 0x20 or n >= hi:
            return []
        if ch == "\\":
            return [rest + ((S, nid, n, -1),)]
        return [rest + ((S, nid, n + counted, 0),)] if counted else [rest + (top,)]

    def _number(self, rest: tuple, top: tuple, ch: str) -> list[tuple]:
        _, integer, phase = top
        digit = ch in DIGITS
        nxt = None
        if phase == SIGN:
            nxt = ZERO if ch == "0" else (INTP if digit else None)
            return [rest + ((N, integer, nxt),)] if nxt is not None else []
        if phase == INTP and digit:
            nxt = INTP
        elif phase in (ZERO, INTP) and not integer and ch == ".":
            nxt = DOT
        elif phase in (ZERO, INTP, FRAC) and not integer and ch in "eE":
            nxt = EXP
        elif phase in (DOT, FRAC) and digit:
            nxt = FRAC
        elif phase == EXP and ch in "+-":
            nxt = EXPS
        elif phase in (EXP, EXPS, EXPD) and digit:
            nxt = EXPD
        if nxt is not None:
            return [rest + ((N, integer, nxt),)]
        if phase in ACCEPTING:
            return self.step(rest, ch)  # the number ended: ``ch`` belongs to what holds it
        return []

    def _literal(self, rest: tuple, top: tuple, ch: str) -> list[tuple]:
        _, alts, pos = top
        matching = tuple(a for a in alts if len(a) > pos and a[pos] == ch)
        out: list[tuple] = []
        if any(len(a) == pos + 1 for a in matching):
            out.append(rest)
        longer = tuple(a for a in matching if len(a) > pos + 1)
        if longer:
            out.append(rest + ((L, longer, pos + 1),))
        return out

    def _candidates(self, nid: int, i: int) -> tuple[int, ...]:
        """Properties that may come next from index ``i``: up to and including the next required one."""
        props = self.nodes[nid].props
        out = []
        for p in range(i, len(props)):
            out.append(p)
            if props[p][2]:
                break
        return tuple(out)

    def _object(self, rest: tuple, top: tuple, ch: str) -> list[tuple]:
        _, nid, i, phase, ws, x = top
        props = self.nodes[nid].props
        if phase == KEY:
            cands, pos = x
            out: list[tuple] = []
            going = tuple(p for p in cands if props[p][0][pos] == ch)
            for p in going:
                if len(props[p][0]) == pos + 1:
                    out.append(rest + ((OB, nid, i, COLON, 0, p),))
            longer = tuple(p for p in going if len(props[p][0]) > pos + 1)
            if longer:
                out.append(rest + ((OB, nid, i, KEY, 0, (longer, pos + 1)),))
            return out
        if ch in WS:
            return [rest + ((OB, nid, i, phase, ws + 1, x),)] if ws < MAX_WS else []
        if phase == COLON:
            if ch != ":":
                return []
            return [rest + ((OB, nid, x + 1, AFTER, 0, None), (V, props[x][1], 0))]
        cands = self._candidates(nid, i)
        required_left = any(p[2] for p in props[i:])
        if phase in (START, COMMA) and ch == '"' and cands:
            return [rest + ((OB, nid, i, KEY, 0, (cands, 1)),)]
        if phase == AFTER and ch == "," and cands:
            return [rest + ((OB, nid, i, COMMA, 0, None),)]
        if phase in (START, AFTER) and ch == "}" and not required_left:
            return [rest]
        return []

    def _free(self, rest: tuple, top: tuple, ch: str) -> list[tuple]:
        _, nid, phase, ws = top
        values = self.nodes[nid].child
        if ch in WS:
            return [rest + ((F, nid, phase, ws + 1),)] if ws < MAX_WS else []
        if phase == COLON:
            return [rest + ((F, nid, AFTER, 0), (V, values, 0))] if ch == ":" else []
        if phase in (START, COMMA) and ch == '"' and values >= 0:
            return [rest + ((F, nid, COLON, 0), (S, -1, 0, 0))]
        if phase == AFTER and ch == ",":
            return [rest + ((F, nid, COMMA, 0),)]
        if phase in (START, AFTER) and ch == "}":
            return [rest]
        return []

    def _array(self, rest: tuple, top: tuple, ch: str) -> list[tuple]:
        _, nid, count, phase, ws = top
        node = self.nodes[nid]
        if ch in WS:
            return [rest + ((A, nid, count, phase, ws + 1),)] if ws < MAX_WS else []
        if phase in (START, AFTER) and ch == "]" and count >= node.lo:
            return [rest]
        if phase == AFTER:
            return [rest + ((A, nid, count, COMMA, 0),)] if ch == "," and count < node.hi else []
        if count >= node.hi:
            return []
        return self._start(rest + ((A, nid, count + 1, AFTER, 0),), node.child, ch)

    # --- the shortest way out ---------------------------------------------------------------
    def _frame_close(self, frame: tuple) -> int:
        kind = frame[0]
        if kind == V:
            return self.min_len[frame[1]]
        if kind == S:
            _, nid, n, esc = frame
            lo = self.nodes[nid].lo if nid >= 0 else 0
            pending = 1 if esc == -1 else esc
            return pending + max(0, lo - n - (1 if esc else 0)) + 1
        if kind == N:
            return 0 if frame[2] in ACCEPTING else 1
        if kind == L:
            return min(len(a) for a in frame[1]) - frame[2]
        if kind == OB:
            return self._object_close(frame)
        if kind == F:
            _, nid, phase, _ws = frame
            values = self.nodes[nid].child
            if phase == COLON:
                return 1 + self.min_len[values] + 1
            if phase == COMMA:
                return 3 + self.min_len[values] + 1  # "":<value>}
            return 1
        _, nid, count, phase, _ws = frame
        node = self.nodes[nid]
        need = max(0, node.lo - count)
        item = self.min_len[node.child] if node.child >= 0 else 0
        if phase == COMMA:
            need = max(1, need)
            return need * item + (need - 1) + 1
        if phase == START:
            return (need * item + need - 1 if need else 0) + 1
        return need * (item + 1) + 1

    def _object_close(self, frame: tuple) -> int:
        _, nid, i, phase, _ws, x = frame
        props, rest = self.nodes[nid].props, self.rest[nid]
        if phase == START:
            return (rest[i] - 1 if rest[i] else 0) + 1
        if phase == AFTER:
            return rest[i] + 1
        if phase == COLON:
            return 1 + self.min_len[props[x][1]] + rest[x + 1] + 1
        cands, pos = x if phase == KEY else (self._candidates(nid, i), 0)
        return min(len(props[p][0]) - pos + 1 + self.min_len[props[p][1]] + rest[p + 1] for p in cands) + 1


# --- compiling ------------------------------------------------------------------------------
def compile_schema(schema: Any, *, strict: bool = True) -> Grammar:
    """A ``Grammar`` for ``schema``; ``SchemaError`` when it asks for what cannot be enforced."""
    compiler = _Compiler(schema, strict)
    root = compiler.node(schema, "#")
    grammar = Grammar(compiler.nodes, root)
    _measure(grammar)
    if grammar.min_len[root] >= INF:
        raise SchemaError("the schema accepts no finite JSON value")
    return grammar


def json_object_grammar() -> Grammar:
    """JSON mode: any JSON object."""
    return compile_schema({"type": "object"})


class _Compiler:
    def __init__(self, root: Any, strict: bool) -> None:
        self.root, self.strict = root, strict
        self.nodes: list[Node] = []
        self.refs: dict[str, int] = {}
        self._any: int | None = None

    def add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def any(self) -> int:
        """Any JSON value (a union over every type, objects and arrays of any values)."""
        if self._any is None:
            self._any = self.add(Node(UNION))
            obj = self.add(Node(FREE, child=self._any))
            arr = self.add(Node(ARR, child=self._any))
            kinds = [
                self.add(Node(STR)),
                self.add(Node(NUM)),
                self.add(Node(BOOL)),
                self.add(Node(NULL)),
                obj,
                arr,
            ]
            self.nodes[self._any].alts = tuple(kinds)
        return self._any

    def node(self, schema: Any, where: str) -> int:
        if schema is True or schema == {}:
            return self.any()
        if schema is False:
            raise SchemaError(f"{where}: `false` accepts nothing")
        if not isinstance(schema, dict):
            raise SchemaError(f"{where}: a schema must be an object")
        self._check_keywords(schema, where)
        if "$ref" in schema:
            return self._ref(schema["$ref"], where)
        if "allOf" in schema:
            parts = schema["allOf"]
            if not isinstance(parts, list) or len(parts) != 1:
                raise SchemaError(f"{where}: only a one-element allOf is supported")
            return self.node(parts[0], f"{where}/allOf/0")
        for key in ("anyOf", "oneOf"):
            if key in schema:
                alts = schema[key]
                if not isinstance(alts, list) or not alts:
                    raise SchemaError(f"{where}: {key} must be a non-empty list")
                ids = tuple(self.node(s, f"{where}/{key}/{j}") for j, s in enumerate(alts))
                return self._nullable(schema, self.add(Node(UNION, alts=ids)))
        if "const" in schema:
            return self.add(Node(LIT, alts=(_dump(schema["const"]),)))
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaError(f"{where}: enum must be a non-empty list")
            return self.add(Node(LIT, alts=tuple(dict.fromkeys(_dump(v) for v in values))))
        kind = schema.get("type")
        if kind is None:
            kind = "object" if "properties" in schema else ("array" if "items" in schema else None)
        if kind is None:
            return self._nullable(schema, self.any())
        if isinstance(kind, list):
            if not kind:
                raise SchemaError(f"{where}: type must not be an empty list")
            ids = tuple(self._typed(schema, k, where) for k in kind)
            return self._nullable(schema, ids[0] if len(ids) == 1 else self.add(Node(UNION, alts=ids)))
        return self._nullable(schema, self._typed(schema, kind, where))

    def _nullable(self, schema: dict, nid: int) -> int:
        if schema.get("nullable") is True:
            return self.add(Node(UNION, alts=(nid, self.add(Node(NULL)))))
        return nid

    def _check_keywords(self, schema: dict, where: str) -> None:
        for key in schema:
            if key in STRUCTURAL or key in ANNOTATIONS or key.startswith("x-"):
                continue
            if not self.strict:
                continue  # lenient: the structure is enforced, other assertions are skipped
            raise SchemaError(f"{where}: `{key}` cannot be enforced by the self-hosted engine")

    def _ref(self, ref: Any, where: str) -> int:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(f"{where}: only local $ref (#/...) is supported")
        if ref in self.refs:
            return self.refs[ref]
        target: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise SchemaError(f"{where}: $ref {ref!r} points nowhere")
            target = target[part]
        placeholder = self.add(Node(UNION))  # recursion: later refs reach this node
        self.refs[ref] = placeholder
        real = self.node(target, ref)
        self.nodes[placeholder] = Node(UNION, alts=(real,))
        return placeholder

    def _typed(self, schema: dict, kind: Any, where: str) -> int:
        if kind == "string":
            lo, hi = _count(schema, "minLength", 0, where), _count(schema, "maxLength", INF, where)
            return self.add(Node(STR, lo=lo, hi=hi))
        if kind == "integer":
            return self.add(Node(INT))
        if kind == "number":
            return self.add(Node(NUM))
        if kind == "boolean":
            return self.add(Node(BOOL))
        if kind == "null":
            return self.add(Node(NULL))
        if kind == "array":
            lo, hi = _count(schema, "minItems", 0, where), _count(schema, "maxItems", INF, where)
            if lo > hi:
                raise SchemaError(f"{where}: minItems > maxItems")
            items = schema.get("items", True)
            nid = self.add(Node(ARR, lo=lo, hi=hi))
            self.nodes[nid].child = self.node(items, f"{where}/items") if hi > 0 else -1
            return nid
        if kind == "object":
            return self._object(schema, where)
        raise SchemaError(f"{where}: unknown type {kind!r}")

    def _object(self, schema: dict, where: str) -> int:
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        if not isinstance(props, dict) or not isinstance(required, list):
            raise SchemaError(f"{where}: properties must be an object and required a list")
        extra = schema.get("additionalProperties", True)
        if not props and not required:
            nid = self.add(Node(FREE))
            self.nodes[nid].child = (
                -1 if extra is False else self.node(extra, f"{where}/additionalProperties")
            )
            return nid
        if extra not in (True, False) and not isinstance(extra, dict):
            raise SchemaError(f"{where}: additionalProperties must be a boolean or a schema")
        nid = self.add(Node(OBJ))
        names = list(props) + [r for r in required if r not in props]
        built = []
        for name in names:
            sub = props.get(name, True)
            built.append((_dump(str(name)), self.node(sub, f"{where}/properties/{name}"), name in required))
        self.nodes[nid].props = tuple(built)
        return nid


def _count(schema: dict, key: str, default: int, where: str) -> int:
    value = schema.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SchemaError(f"{where}: {key} must be a non-negative integer")
    return value


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _measure(grammar: Grammar) -> None:
    """Shortest serialization of each node (fixpoint, for recursive schemas) and, per object,
    the cost of its required properties from each index on (a comma before each)."""
    nodes = grammar.nodes
    best = [INF] * len(nodes)

    def length(node: Node) -> int:
        kind = node.kind
        if kind == STR:
            return 2 + node.lo
        if kind in (NUM, INT):
            return 1
        if kind in (BOOL, NULL):
            return 4
        if kind == LIT:
            return min(len(a) for a in node.alts)
        if kind == UNION:
            return min((best[a] for a in node.alts), default=INF)
        if kind == FREE:
            return 2
        if kind == ARR:
            if node.lo == 0:
                return 2
            item = best[node.child]
            return INF if item >= INF else 2 + node.lo * item + node.lo - 1
        req = [len(k) + 1 + best[c] for k, c, r in node.props if r]
        if any(x >= INF for x in req):
            return INF
        return 2 + sum(req) + max(0, len(req) - 1)

    changed = True
    while changed:
        changed = False
        for j, node in enumerate(nodes):
            value = min(length(node), INF)
            if value < best[j]:
                best[j], changed = value, True
    grammar.min_len = best
    for j, node in enumerate(nodes):
        if node.kind == OBJ:
            costs = [0] * (len(node.props) + 1)
            for p in range(len(node.props) - 1, -1, -1):
                key, child, required = node.props[p]
                costs[p] = costs[p + 1] + (1 + len(key) + 1 + best[child] if required else 0)
            grammar.rest[j] = tuple(min(c, INF) for c in costs)
