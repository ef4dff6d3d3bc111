"""Reading the router config: YAML in, a validated ``RouterConfig`` or one ``ConfigError`` out.

Names are canonicalised first (aliases work wherever a model is named); schema errors and the
cross-checks (``app.config.checks``) are reported together, each problem once: a file with schema
errors is cross-checked without its invalid values.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.config.checks import _overlaps, check_references
from app.config.schema import RouterConfig


class ConfigError(Exception):
    """Start-up stops here: ``str()`` names the file, and each problem's field path and what was
    expected, one line each, every problem once."""

    def __init__(
        self, source: str, problems: list[tuple[str, str]], *, title: str = "invalid router config"
    ) -> None:
        self.source = source
        self.problems = list(dict.fromkeys(problems))
        lines = [f"{source}: {path or '<root>'}: {what}" for path, what in self.problems]
        count = f"{len(lines)} problems" if len(lines) != 1 else "1 problem"
        super().__init__(f"{title} ({count})\n  " + "\n  ".join(lines))


def name_table(models: dict[str, Any]) -> dict[str, str]:
    """Lowercased name -> logical model: logical names, aliases, and provider model ids used by
    only one logical model. ``models`` maps names to ``ModelSpec``s or their raw dicts."""

    def field(spec: Any, key: str, default: Any) -> Any:
        return spec.get(key, default) if isinstance(spec, dict) else getattr(spec, key, default)

    names: dict[str, str] = {}
    owners: dict[str, set[str]] = {}
    for name, spec in models.items():
        owners.setdefault(str(field(spec, "model_id", "")).lower(), set()).add(name)
    names.update({mid: next(iter(o)) for mid, o in owners.items() if len(o) == 1 and mid})
    for name, spec in models.items():
        for alias in field(spec, "aliases", None) or ():
            names[str(alias).lower()] = name
        names[name.lower()] = name
    return names


def shared_ids(models: dict[str, Any]) -> dict[str, list[str]]:
    """Lowercased provider model id -> the logical models (sorted) that share it, for the ids more
    than one logical model uses (which therefore resolve to none). Aliases and logical names win."""
    owners: dict[str, set[str]] = {}
    for name, spec in models.items():
        model_id = spec.get("model_id", "") if isinstance(spec, dict) else getattr(spec, "model_id", "")
        owners.setdefault(str(model_id).lower(), set()).add(name)
    names = name_table(models)
    return {mid: sorted(o) for mid, o in owners.items() if len(o) > 1 and mid and mid not in names}


def resolve_name(name: str, names: dict[str, str]) -> str | None:
    """A logical model for ``name``, also behind a ``provider/`` prefix (``vertex_ai/gemini-1.5-pro``)."""
    key = name.strip().lower()
    if key in names:
        return names[key]
    return names.get(key.split("/", 1)[1]) if "/" in key else None


def _canonical_references(raw: dict[str, Any]) -> dict[str, Any]:
    """The raw config with every model reference written as its logical name, so aliases
    (``self_hosted/mistral-7b-instruct``, as the routing guide writes them) work anywhere a model is named."""
    models = raw.get("models")
    if not isinstance(models, dict):
        return raw
    names = name_table({k: v for k, v in models.items() if isinstance(v, dict)})

    def canon(value: Any) -> Any:
        return resolve_name(value, names) or value if isinstance(value, str) else value

    def canon_list(values: Any) -> Any:
        return [canon(v) for v in values] if isinstance(values, list) else values

    out = dict(raw)
    routing = out.get("routing")
    if isinstance(routing, dict):
        routing = out["routing"] = dict(routing)
        if isinstance(routing.get("auto"), dict):
            routing["auto"] = {k: canon_list(v) for k, v in routing["auto"].items()}
        if isinstance(routing.get("fallbacks"), dict):
            routing["fallbacks"] = {canon(k): canon_list(v) for k, v in routing["fallbacks"].items()}
    strategies = out.get("strategies")
    if isinstance(strategies, dict):
        out["strategies"] = {name: _canonical_strategy(s, canon_list) for name, s in strategies.items()}
    return out


def _canonical_strategy(strategy: Any, canon_list: Any) -> Any:
    if not isinstance(strategy, dict) or not isinstance(strategy.get("decision_tree"), list):
        return strategy
    rules = []
    for rule in strategy["decision_tree"]:
        if isinstance(rule, dict) and isinstance(rule.get("action"), dict) and "models" in rule["action"]:
            rule = {**rule, "action": {**rule["action"], "models": canon_list(rule["action"]["models"])}}
        rules.append(rule)
    return {**strategy, "decision_tree": rules}


PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = "deployments/configs/router.yaml"


def resolve_config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The router config file: ``path``, else ``$ROUTER_CONFIG``, else the default file; a relative
    path is tried from the working directory, then from the project root."""
    candidate = Path(path or os.environ.get("ROUTER_CONFIG") or DEFAULT_CONFIG).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return PROJECT_ROOT / candidate


def load_config(path: str | os.PathLike[str]) -> RouterConfig:
    """Read, validate and cross-check the YAML file at ``path``."""
    source = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, [("", "file not found")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [("", f"not valid YAML: {exc}")]) from None
    return parse_config(raw, source=source)


def parse_config(raw: Any, *, source: str = "<config>") -> RouterConfig:
    """The config, or a ``ConfigError`` with every problem at once: the schema's (types, ranges,
    unknown keys) and, for what is still readable around them, the cross-checks' (names that do
    not exist, rules between fields)."""
    if not isinstance(raw, dict):
        raise ConfigError(source, [("", "expected a mapping at the top level")])
    canonical = _canonical_references(raw)
    try:
        config = RouterConfig.model_validate(canonical)
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors()]
        partial, pruned = _salvage(canonical, exc)
        if partial is not None:
            problems += [
                (path, what)
                for path, what in check_references(partial, declared=_declared(raw), pruned=pruned)
                if not _overlaps(path, pruned)
            ]
        raise ConfigError(source, problems) from None
    problems = check_references(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def _salvage(raw: dict[str, Any], exc: ValidationError) -> tuple[RouterConfig | None, list[str]]:
    """The config with every invalid value left out (a default takes its place; an entry of a
    mapping that cannot stand without it goes too), so that the cross-checks can still run on
    the rest; and the dotted paths left out. None when too little is left (no models)."""
    data = copy.deepcopy(raw)
    pruned: list[str] = []
    errors = exc.errors()
    for _ in range(64):
        found = {_prune_target(data, err["loc"]) for err in errors}
        targets = [t for t in found if t is not None]
        if None in found or not targets:
            return None, pruned
        for target in sorted(targets, key=len, reverse=True):
            parent = data
            for part in target[:-1]:
                parent = parent[part]
            if isinstance(parent, dict) and target[-1] in parent:
                del parent[target[-1]]
                pruned.append(".".join(str(p) for p in target))
        try:
            return RouterConfig.model_validate(data), pruned
        except ValidationError as again:
            errors = again.errors()
    return None, pruned


def _prune_target(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The deepest mapping key on an error's location: the value to leave out (for a missing
    field, the entry that needs it). Union branch names and list indexes are not keys."""
    node, path, target = data, [], None
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            target = tuple(path)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        else:
            break
    return target


def _declared(raw: dict[str, Any]) -> dict[str, set[str]]:
    """Every name the file declares, valid entry or not: a reference to an invalid one is not
    reported again as unknown."""

    def keys(section: str) -> set[str]:
        value = raw.get(section)
        return {str(k) for k in value} if isinstance(value, dict) else set()

    section = raw.get("providers")
    providers = section if isinstance(section, dict) else {}
    budget_keys = {
        str(p["budget_key"]) for p in providers.values() if isinstance(p, dict) and p.get("budget_key")
    }
    return {
        "models": keys("models"),
        "providers": keys("providers"),
        "strategies": keys("strategies"),
        "budget_keys": budget_keys,
    }


def _describe(err: Any) -> tuple[str, str]:
    path = ".".join(str(part) for part in err["loc"])
    what = err["msg"]
    if err["type"] == "extra_forbidden":
        what = "unknown key (not part of the config schema)"
    elif "input" in err and not isinstance(err["input"], dict | list):
        what = f"{what} (got {err['input']!r})"
    return path, what
