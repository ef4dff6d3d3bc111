#!/usr/bin/env python3
"""Extract the chat-completions / models subset of OpenAI's OpenAPI spec.

Run once by a developer, never by tests:

    python tests/specs/build_openai_subset.py /path/to/openai-openapi.yaml

The input is the full spec from https://github.com/openai/openai-openapi
(MIT licence, see LICENSE-openai-openapi next to this file).  The output,
``tests/specs/openai-chat-subset.json``, is a standalone OpenAPI document
with:

* ``openapi`` and ``info`` (title and version) copied from the source spec,
  plus an ``x-source`` note (an ``x-`` extension, so the document stays a
  valid OpenAPI document) saying where it came from;
* ``paths``: ``/chat/completions`` (``post`` only) and ``/models`` (``get``
  only), copied verbatim;
* ``components``: every component those operations and the root schemas
  below reference, transitively.  ``components.schemas`` holds exactly the
  closure of ``ROOT_SCHEMAS`` (the path operations reference nothing outside
  it, which this script checks); other component sections (e.g. the
  ``TooManyRequests`` response the 429 refers to) are copied as referenced.

Every schema and operation is copied unchanged: ``$ref`` strings keep their
``#/components/...`` form, so the file resolves on its own.  No OpenAPI
3.0/3.1 translation happens here; that is tests/conformance.py's job.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT_SCHEMAS = (
    "CreateChatCompletionRequest",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
)

# path -> the HTTP methods to keep
PATH_OPERATIONS = {
    "/chat/completions": ("post",),
    "/models": ("get",),
}

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "openai-chat-subset.json"

_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

_REF_RE = re.compile(r"^#/components/([^/]+)/([^/]+)$")


class _SpecLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML loader that keeps timestamps as strings.

    The stock loader turns unquoted ``2024-10-01`` into ``datetime.date``,
    which is not JSON and is not what the spec author meant (JSON Schema
    sees strings).
    """


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _iter_refs(node: Any):
    """Yield every reference string under ``node``.

    Besides ``$ref`` values this includes ``discriminator.mapping`` values,
    which are references too.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            elif key == "discriminator" and isinstance(value, dict):
                yield from (v for v in value.get("mapping", {}).values() if isinstance(v, str))
                yield from _iter_refs(value)
            else:
                yield from _iter_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _iter_refs(item)


def _parse_ref(ref: str) -> tuple[str, str]:
    match = _REF_RE.match(ref)
    if not match:
        raise SystemExit(f"unsupported reference {ref!r}: only #/components/<section>/<name> is handled")
    section, name = match.groups()
    return section, name.replace("~1", "/").replace("~0", "~")


def _closure(spec: dict, seeds: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """All components reachable from ``seeds``, by section."""
    components = spec.get("components", {})
    found: dict[str, dict[str, Any]] = {}
    todo = list(seeds)
    while todo:
        section, name = todo.pop()
        if name in found.get(section, {}):
            continue
        try:
            value = components[section][name]
        except KeyError:
            raise SystemExit(f"dangling reference #/components/{section}/{name}") from None
        found.setdefault(section, {})[name] = value
        todo.extend(_parse_ref(ref) for ref in _iter_refs(value))
    return found


def build_subset(spec: dict, source_name: str, source_sha256: str) -> dict:
    paths: dict[str, dict] = {}
    for path, methods in PATH_OPERATIONS.items():
        item = spec["paths"][path]
        kept = {}
        # Path-level fields (parameters, summary, ...) that are not operations.
        for key, value in item.items():
            if key in methods or key not in _HTTP_METHODS:
                kept[key] = value
        missing = [m for m in methods if m not in item]
        if missing:
            raise SystemExit(f"{path}: source spec has no {missing}")
        paths[path] = kept

    schema_closure = _closure(spec, [("schemas", name) for name in ROOT_SCHEMAS])["schemas"]
    path_refs = [_parse_ref(ref) for ref in _iter_refs(paths)]
    components = _closure(spec, path_refs + [("schemas", name) for name in ROOT_SCHEMAS])
    extra = set(components["schemas"]) - set(schema_closure)
    if extra:
        # The brief: components.schemas is exactly the closure of ROOT_SCHEMAS.
        raise SystemExit(f"path operations reference schemas outside the root closure: {sorted(extra)}")

    document: dict[str, Any] = {"openapi": spec["openapi"]}
    info = {"title": spec["info"]["title"], "version": spec["info"]["version"]}
    if "license" in spec["info"]:
        info["license"] = spec["info"]["license"]
    document["info"] = info
    document["x-source"] = (
        f"Subset of {source_name} (sha256 {source_sha256}) from "
        "https://github.com/openai/openai-openapi, MIT licence (see LICENSE-openai-openapi). "
        f"Contains paths {', '.join(f'{m.upper()} {p}' for p, ms in PATH_OPERATIONS.items() for m in ms)} "
        f"and the transitive closure of schemas {', '.join(ROOT_SCHEMAS)}. "
        "Paths are relative to the /v1 base URL (the source's server is https://api.openai.com/v1; "
        "servers are left out on purpose). "
        "Generated by tests/specs/build_openai_subset.py; do not edit by hand."
    )
    if "security" in spec:
        document["security"] = spec["security"]
        for requirement in spec["security"]:
            for scheme in requirement:
                schemes = components.setdefault("securitySchemes", {})
                schemes[scheme] = spec["components"]["securitySchemes"][scheme]
    document["paths"] = paths
    document["components"] = {
        section: {name: components[section][name] for name in sorted(components[section])}
        for section in sorted(components)
    }
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", type=Path, help="full openai-openapi.yaml")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    raw = args.spec.read_bytes()
    spec = yaml.load(raw, Loader=_SpecLoader)  # noqa: S506 - safe loader subclass
    document = build_subset(spec, args.spec.name, hashlib.sha256(raw).hexdigest())

    text = json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    args.output.write_text(text, encoding="utf-8")
    counts = ", ".join(f"{len(v)} {k}" for k, v in document["components"].items())
    print(
        f"wrote {args.output} ({len(text.encode('utf-8'))} bytes): openapi {document['openapi']}, "
        f"spec version {document['info']['version']}, {counts}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
