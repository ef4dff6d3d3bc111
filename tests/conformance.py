"""Check JSON bodies against OpenAI's published schemas.

    from tests.conformance import assert_conforms
    assert_conforms(body, "CreateChatCompletionResponse")

The schemas come from ``tests/specs/openai-chat-subset.json``, a verbatim
subset of OpenAI's OpenAPI spec (see tests/specs/README.md).  Nothing here
reads the full spec or anything outside the repository.

How the document is read depends on the ``openapi`` version it declares:

* ``3.1.x``: schemas are JSON Schema 2020-12 (the OAS 3.1 base dialect; its
  extra keywords ``discriminator``, ``example``, ``x-*`` ... are annotations
  and do not affect validation).
* ``3.0.x``: schemas are the OAS 3.0 dialect of JSON Schema draft 4/5;
  ``nullable: true`` is translated into ``anyOf: [{"type": "null"}, <schema>]``
  when loading (``_translate_nullable``), and draft 4 rules apply otherwise.

Anything else raises.  The only change made to OpenAI's schemas beyond that
standard 3.0 translation is in ``_adapt_openai_spec_quirks``, which is
documented there; ``adaptations()`` lists every place it touched.

``format`` is not asserted (OpenAI uses non-standard formats such as
``unixtime``), as JSON Schema 2020-12 specifies by default.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.exceptions
import referencing
import referencing.jsonschema

SUBSET_PATH = Path(__file__).resolve().parent / "specs" / "openai-chat-subset.json"

# Base URI the subset document is registered under; ``#/components/...``
# references inside it resolve against this.
_BASE_URI = "urn:hybrid-router:openai-chat-subset"

# Keywords whose values are data, not subschemas: never rewrite inside them.
_DATA_KEYWORDS = frozenset({"default", "enum", "const", "example", "examples", "required", "discriminator"})
# Keywords whose values are maps of name -> subschema.
_SCHEMA_MAP_KEYWORDS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)


def _escape(token: str) -> str:
    """JSON-pointer escape one reference token."""
    return token.replace("~", "~0").replace("/", "~1")


def _translate_nullable(node: Any, pointer: str, touched: list[str]) -> Any:
    """Return a copy of schema ``node`` with OAS 3.0 ``nullable`` translated.

    ``{"type": "string", "nullable": true, ...}`` becomes
    ``{"anyOf": [{"type": "null"}, {"type": "string", ...}]}``: the
    original schema, minus ``nullable``, or null.  Wrapping (rather than
    adding ``"null"`` to ``type``) also works where ``nullable`` sits next to
    ``$ref``, ``oneOf`` or ``enum`` without a ``type``.  ``nullable: false``
    is simply dropped.  JSON pointers of the rewritten schemas are appended
    to ``touched``.
    """
    if isinstance(node, list):
        return [_translate_nullable(item, f"{pointer}/{i}", touched) for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        child = f"{pointer}/{_escape(key)}"
        if key in _DATA_KEYWORDS or key.startswith("x-"):
            out[key] = value
        elif key in _SCHEMA_MAP_KEYWORDS and isinstance(value, dict):
            out[key] = {
                name: _translate_nullable(sub, f"{child}/{_escape(name)}", touched)
                for name, sub in value.items()
            }
        else:
            out[key] = _translate_nullable(value, child, touched)
    nullable = out.get("nullable")
    if isinstance(nullable, bool):
        del out["nullable"]
        if nullable:
            touched.append(pointer)
            return {"anyOf": [{"type": "null"}, out]}
    return out


def _translate_schema_map(schemas: dict[str, Any], touched: list[str]) -> dict[str, Any]:
    """``_translate_nullable`` over every schema of ``components.schemas``."""
    return {
        name: _translate_nullable(schema, f"#/components/schemas/{_escape(name)}", touched)
        for name, schema in schemas.items()
    }


def _adapt_openai_spec_quirks(
    schemas: dict[str, Any], openapi_version: str
) -> tuple[dict[str, Any], list[str]]:
    """THE ONE PLACE where OpenAI's schemas are adapted; returns (schemas, touched pointers).

    Adaptation 1 (3.1 documents only): leftover ``nullable: true``.
        OpenAI's spec declares ``openapi: 3.1.0`` but still carries the 3.0
        keyword ``nullable: true`` in places (21 in our subset of spec 2.3.0,
        e.g. ``CreateChatCompletionStreamResponse``'s ``choices[].finish_reason``,
        ``choices[].logprobs`` and ``usage``).  In 3.1 ``nullable`` is not a
        keyword, so a strict reading forbids null there, yet the spec's own
        chunk example sends ``"finish_reason": null`` and ``"logprobs": null``
        on every chunk but the last, and real servers do the same.  We read
        those leftovers with their 3.0 meaning (null also allowed), using the
        same translation as for 3.0 documents.  Where the 3.1 spec expresses
        nullability properly (``anyOf`` with ``type: 'null'``) nothing changes.
        This loosens only those leftover places, each listed by ``adaptations()``.

    Nothing else is adapted: no ``required`` entry is dropped, no
    ``additionalProperties`` is changed.
    """
    touched: list[str] = []
    if openapi_version.startswith("3.1."):
        schemas = _translate_schema_map(schemas, touched)
    return schemas, touched


def _dialect(
    document: dict[str, Any],
) -> tuple[str, type[jsonschema.protocols.Validator], referencing.Specification]:
    version = document.get("openapi")
    if not isinstance(version, str):
        raise ValueError(  # noqa: TRY004 - a bad document, like the unsupported versions below
            f"not an OpenAPI 3 document: openapi={version!r}"
        )
    if version.startswith("3.1."):
        dialect = document.get("jsonSchemaDialect", "https://spec.openapis.org/oas/3.1/dialect/base")
        if dialect not in {
            "https://spec.openapis.org/oas/3.1/dialect/base",
            "https://json-schema.org/draft/2020-12/schema",
        }:
            raise ValueError(f"unsupported jsonSchemaDialect {dialect!r}")
        return version, jsonschema.Draft202012Validator, referencing.jsonschema.DRAFT202012
    if version.startswith("3.0."):
        return version, jsonschema.Draft4Validator, referencing.jsonschema.DRAFT4
    raise ValueError(f"unsupported OpenAPI version {version!r}")


def compile_document(
    document: dict[str, Any],
) -> tuple[dict[str, Any], list[str], type, referencing.Registry]:
    """Prepare an OpenAPI document for validation.

    Returns (schemas as validated, adapted pointers, validator class, registry).
    Exposed for tests; use ``assert_conforms`` otherwise.
    """
    version, validator_cls, specification = _dialect(document)
    schemas = document.get("components", {}).get("schemas", {})
    # 3.0: standard OAS 3.0 semantics, not an adaptation.
    schemas = _translate_schema_map(schemas, []) if version.startswith("3.0.") else copy.deepcopy(schemas)
    schemas, touched = _adapt_openai_spec_quirks(schemas, version)
    resource = specification.create_resource({"components": {"schemas": schemas}})
    registry = referencing.Registry().with_resource(_BASE_URI, resource)
    return schemas, touched, validator_cls, registry


def validator_for(document: dict[str, Any], schema_name: str) -> jsonschema.protocols.Validator:
    """A validator for ``components.schemas[schema_name]`` of ``document``."""
    schemas, _touched, validator_cls, registry = compile_document(document)
    return _make_validator(schemas, validator_cls, registry, schema_name)


def _make_validator(schemas, validator_cls, registry, schema_name: str):
    if schema_name not in schemas:
        have = ", ".join(sorted(schemas))
        raise KeyError(f"no schema {schema_name!r} in the OpenAI subset; have: {have}")
    ref = {"$ref": f"{_BASE_URI}#/components/schemas/{schema_name}"}
    return validator_cls(ref, registry=registry)


@functools.lru_cache(maxsize=1)
def _compiled_subset():
    document = json.loads(SUBSET_PATH.read_text(encoding="utf-8"))
    return compile_document(document)


@functools.cache
def _subset_validator(schema_name: str):
    schemas, _touched, validator_cls, registry = _compiled_subset()
    return _make_validator(schemas, validator_cls, registry, schema_name)


def adaptations() -> list[str]:
    """JSON pointers (into the subset) of every schema ``_adapt_openai_spec_quirks`` rewrote."""
    return list(_compiled_subset()[1])


def _where(path) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _describe(error: jsonschema.exceptions.ValidationError) -> str:
    instance = json.dumps(error.instance, default=str)
    if len(instance) > 200:
        instance = instance[:200] + "..."
    message = error.message if len(error.message) < 300 else error.message[:300] + "..."
    schema_path = "/".join(str(p) for p in error.absolute_schema_path)
    lines = [
        f"at {_where(error.absolute_path)}: {message}",
        f"    validator: {error.validator!r} (schema path: {schema_path})",
        f"    instance: {instance}",
    ]
    if error.context:
        # anyOf/oneOf: say why each alternative failed (the sub-errors' schema
        # paths start with the index of the alternative).
        lines.append("    alternatives:")
        for sub in sorted(error.context, key=lambda e: list(map(str, e.schema_path)))[:12]:
            branch = sub.schema_path[0] if sub.schema_path else "?"
            message = sub.message if len(sub.message) < 160 else sub.message[:160] + "..."
            lines.append(f"      [{branch}] at {_where(sub.absolute_path)}: {message} ({sub.validator!r})")
        if len(error.context) > 12:
            lines.append(f"      ... and {len(error.context) - 12} more")
    return "\n".join(lines)


def format_errors(
    errors: list[jsonschema.exceptions.ValidationError], schema_name: str, limit: int = 10
) -> str:
    best = jsonschema.exceptions.best_match(errors)
    parts = [f"instance does not conform to OpenAI schema {schema_name!r} ({len(errors)} error(s))"]
    parts.append("most relevant:\n" + _describe(best))
    if len(errors) > 1:
        parts.append("all (top level):")
        parts.extend(_describe(e) for e in errors[:limit])
        if len(errors) > limit:
            parts.append(f"... and {len(errors) - limit} more")
    return "\n".join(parts)


def assert_conforms(instance: dict, schema_name: str) -> None:
    """Raise AssertionError, saying where and why, unless ``instance`` matches
    ``components.schemas[schema_name]`` of the OpenAI subset."""
    validator = _subset_validator(schema_name)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise AssertionError(format_errors(errors, schema_name))
