"""The router config: one YAML file, validated strictly at start-up.

Unknown keys, wrong types, values out of range and dangling references (a fallback naming a
model that does not exist) stop start-up with a ``ConfigError`` naming the file, each field's
path and what was expected: every problem in one pass, each once (the cross-checks run on what
is still readable around the schema's errors). ``python -m app.check_config`` runs the same
check offline. The file's sections: ``providers``, ``models`` (the catalog), ``routing`` (strategy
defaults, the ``auto`` tree's thresholds and targets, fallback chains), ``strategies`` (custom
decision trees), ``serving`` (how this profile runs the self-hosted engines) and ``logging``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

BUILTIN_STRATEGIES = (
    "auto",
    "fast",
    "quality",
    "cost",
    "long_context",
    "balanced",
    "self_hosted_only",
    "cloud_only",
    "rules",
)

# What a model can be asked for; routing sends a request only to models with what it needs:
# vision (image input), tools (`tools`), json_mode (`response_format` json_object / json_schema),
# logprobs (`logprobs` / `top_logprobs`). `code` marks code models for code-generation routing.
Capability = Literal["code", "vision", "tools", "json_mode", "logprobs"]
ProviderKind = Literal["self_hosted", "openai", "anthropic", "vertex_ai", "openai_compatible"]


# Money limits: more than zero and finite. "No limit" is a key left out, never 0 or a negative.
PositiveMoney = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderSpec(StrictModel):
    """A backend family: where its models run and how the router reaches them."""

    kind: ProviderKind = Field(description="Which adapter talks to this provider.")
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the API key (never the key itself)."
    )
    base_url: str | None = Field(default=None, description="Override of the provider's endpoint.")
    project_env: str | None = Field(
        default=None, description="Vertex AI: environment variable naming the GCP project."
    )
    location: str | None = Field(default=None, description="Vertex AI region, e.g. us-central1.")
    self_hosted: bool = Field(
        default=False,
        description="openai_compatible only: the server is ours (a KServe or vLLM service, Ollama), so "
        "routing treats its models as self-hosted.",
    )
    timeout_s: float = Field(default=120.0, gt=0, description="Whole-call timeout for one attempt.")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Connection timeout.")
    budget_key: str | None = Field(
        default=None, description="Name under which this provider's spend is budgeted (default: its name)."
    )

    @property
    def is_self_hosted(self) -> bool:
        return self.kind == "self_hosted" or (self.kind == "openai_compatible" and self.self_hosted)

    @property
    def runs_in_this_app(self) -> bool:
        """Served by a deployment of this Serve app (the CPU engine, vLLM), not over HTTP."""
        return self.kind == "self_hosted"


class ModelWeights(StrictModel):
    """Relative merits in [0, 1]; higher is better (cost 1.0 means cheapest)."""

    cost: float = Field(ge=0, le=1)
    latency: float = Field(ge=0, le=1)
    quality: float = Field(ge=0, le=1)


class Pricing(StrictModel):
    """Where a model's price comes from: ``genai_prices`` (cloud) or a fixed per-million price."""

    source: Literal["genai_prices", "fixed"] = "genai_prices"
    provider_id: str | None = Field(default=None, description="genai-prices provider id, e.g. google.")
    model_ref: str | None = Field(default=None, description="genai-prices model id (default: model_id).")
    input_per_million: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="USD per 1M input tokens (0: free)."
    )
    output_per_million: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="USD per 1M output tokens (0: free)."
    )

    @model_validator(mode="after")
    def _fixed_has_prices(self) -> Pricing:
        if self.source == "fixed" and (self.input_per_million is None or self.output_per_million is None):
            raise ValueError("a fixed price needs input_per_million and output_per_million")
        return self


class ModelSpec(StrictModel):
    """A logical model in the catalog."""

    provider: str = Field(description="Name of an entry in `providers`.")
    model_id: str = Field(description="The provider's own model id.")
    context_window: int = Field(gt=0, description="Prompt plus completion tokens the model accepts.")
    max_output_tokens: int = Field(default=8192, gt=0)
    capabilities: list[Capability] = Field(
        default_factory=list,
        description="What the model can be asked for: code, vision (image input), tools (tool calling), "
        "json_mode (response_format json_object / json_schema), logprobs (logprobs / top_logprobs). A "
        "request needing one goes only to models that have it; none that may take it is a 400 naming "
        "the parameter.",
    )
    weights: ModelWeights
    pricing: Pricing = Field(default_factory=Pricing)
    typical_latency_ms: int = Field(gt=0, description="Typical time to a short answer, for planning.")
    aliases: list[str] = Field(default_factory=list, description="Other names that resolve here.")
    description: str = ""
    quality_role: str | None = Field(
        default=None,
        description="Which role of the quality predictor stands for this model (a key of `quality.roles`); "
        "models without one are never chosen by quality.",
    )


class AutoThresholds(StrictModel):
    """The seed's ``auto`` decision tree thresholds."""

    long_context_tokens: int = Field(default=100_000, gt=0, description="Above: long-context cloud models.")
    medium_context_tokens: int = Field(default=50_000, gt=0, description="Above: cheap cloud (Flash).")
    high_complexity: float = Field(default=0.7, ge=0, le=1, description="At or above: premium cloud.")
    low_latency_ms: int = Field(default=500, gt=0, description="A latency need below this: fast model.")
    long_prompt_signal_tokens: int = Field(
        default=8_000, gt=0, description="Prompt size that counts as the 'long context' complexity signal."
    )


class AutoTargets(StrictModel):
    """Which models each branch of the ``auto`` tree prefers, best first."""

    long_context: list[str] = ["gemini-pro", "claude-sonnet"]
    medium_context: list[str] = ["gemini-flash"]
    code_generation: list[str] = ["codellama-13b"]
    high_complexity: list[str] = ["claude-opus", "gpt"]
    low_latency: list[str] = ["mistral-7b-fast"]
    default: list[str] = ["mistral-7b-instruct"]


class StrategyWeights(StrictModel):
    cost: float = Field(default=0.4, ge=0)
    latency: float = Field(default=0.3, ge=0)
    quality: float = Field(default=0.3, ge=0)


class RoutingConfig(StrictModel):
    default_strategy: str = "auto"
    thresholds: AutoThresholds = Field(default_factory=AutoThresholds)
    auto: AutoTargets = Field(default_factory=AutoTargets)
    balanced_weights: StrategyWeights = Field(default_factory=StrategyWeights)
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict, description="Per model, the models to try next, in order."
    )
    max_fallbacks: int = Field(default=3, ge=0, description="Most fallbacks a plan carries; 0: none.")
    default_max_tokens: int = Field(
        default=1024, gt=0, description="Completion size assumed for planning when a request sets none."
    )


def _default_roles() -> dict[str, list[str]]:
    return {
        "small": ["Mistral-7B-Instruct-v0.2", "mistralai/Mistral-7B-Instruct-v0.1"],
        "mid": ["gemini-1.5-flash-002", "gpt-3.5-turbo-1106"],
        "large": ["gemini-1.5-pro-002", "gpt-4-1106-preview"],
    }


class QualityConfig(StrictModel):
    """The learned quality predictor that ``auto`` decides with, and its one cost-quality knob."""

    margin: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="`auto` takes the cheapest fitting model whose predicted quality is within this much of "
        "the best fitting model's. 0 always takes the best; larger saves more. Per request: "
        "`auto:<margin>` or the body field `quality_margin`.",
    )
    model_path: str | None = Field(
        default=None, description="A trained predictor (JSON); default: the one shipped with the router."
    )
    roles: dict[str, list[str]] = Field(
        default_factory=_default_roles,
        description="For training: per role, the names of the models in the training data that play it "
        "(a row's label for a role is the mean over those it has).",
    )


class RuleAction(StrictModel):
    models: list[str] = Field(default_factory=list, description="Models to use, best first.")
    provider: str | None = Field(default=None, description="Restrict to this provider's models.")
    strategy: str | None = Field(default=None, description="Hand the decision to this strategy.")

    @model_validator(mode="after")
    def _not_empty(self) -> RuleAction:
        if not (self.models or self.provider or self.strategy):
            raise ValueError("an action needs models, a provider or a strategy")
        return self


class DecisionRule(StrictModel):
    condition: dict[str, Any] = Field(
        default_factory=dict, description="Feature tests, all of which must hold; empty matches always."
    )
    action: RuleAction


class CustomStrategy(StrictModel):
    description: str = ""
    decision_tree: list[DecisionRule] = Field(min_length=1)
    otherwise: str = Field(default="auto", description="Strategy used when no rule matches.")


class CircuitBreakerConfig(StrictModel):
    """The seed's circuit breaker, per backend."""

    enabled: bool = True
    failure_threshold: int = Field(default=5, ge=1, description="Failures in a row before opening.")
    timeout_seconds: float = Field(default=60, gt=0, description="How long open before half-open probing.")
    half_open_requests: int = Field(default=3, ge=1, description="Probe requests allowed while half-open.")


class RetryConfig(StrictModel):
    attempts: int = Field(default=2, ge=1, description="Tries per target, the first included.")
    base_delay_s: float = Field(default=0.25, ge=0, description="First backoff; doubles each retry. 0: none.")
    max_delay_s: float = Field(
        default=4.0, ge=0, description="Longest wait for one target (a longer Retry-After moves on); 0: retry at once."
    )
    jitter: float = Field(default=0.25, ge=0, le=1, description="Backoff spread, as a fraction.")


class ResilienceConfig(StrictModel):
    deadline_s: float = Field(default=300, gt=0, description="A request's whole budget, fallbacks included.")
    first_byte_timeout_s: float = Field(default=60, gt=0, description="A stream must send content by then.")
    retries: RetryConfig = Field(default_factory=RetryConfig)
    fallback_on_client_errors: bool = Field(
        default=False, description="Also try the next target after a 400/401/403 or content-policy error."
    )


class AlertRule(StrictModel):
    name: str
    threshold: float = Field(gt=0, le=10, description="Fraction of the daily budget, e.g. 0.8.")
    action: Literal["notify_ops_team", "switch_to_self_hosted_only"]


class WebhookConfig(StrictModel):
    url_env: str | None = Field(
        default="BUDGET_ALERT_WEBHOOK_URL", description="Environment variable holding the webhook URL."
    )
    retries: int = Field(default=3, ge=0, description="Retries after the first try; 0: none.")
    timeout_s: float = Field(default=5, gt=0)


def _seed_alerts() -> list[AlertRule]:
    return [
        AlertRule(name="daily_budget_80_percent", threshold=0.8, action="notify_ops_team"),
        AlertRule(name="daily_budget_100_percent", threshold=1.0, action="switch_to_self_hosted_only"),
    ]


class CostRules(StrictModel):
    """The seed's ``cost_rules``: daily budgets per provider (by budget key) and in total."""

    timezone: str = Field(default="UTC", description="Budgets reset at midnight here (an IANA zone).")
    daily_budgets: dict[str, PositiveMoney] = Field(
        default_factory=dict,
        description="USD per day (> 0), keyed by provider budget key or 'total'. A key left out has no "
        "limit; a provider that must not spend is one whose key is not set, not a budget of 0.",
    )
    alerts: list[AlertRule] = Field(default_factory=_seed_alerts)
    webhook: WebhookConfig = Field(default_factory=WebhookConfig)
    reservation_ttl_s: float = Field(
        default=900, gt=0, description="A reservation left by a replica that died is dropped after this."
    )

    @model_validator(mode="after")
    def _known_zone(self) -> CostRules:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        return self


class LedgerConfig(StrictModel):
    backend: Literal["sqlite", "redis"] = Field(
        default="sqlite", description="sqlite: one node (replicas share the file); redis: replicas across nodes."
    )
    path: str = Field(default="~/.cache/hybrid-router/ledger.db", description="The SQLite file.")
    redis_url_env: str = Field(default="REDIS_URL", description="Environment variable with the Redis URL.")
    key_prefix: str = "hybrid-router"


class CacheConfig(StrictModel):
    enabled: bool = True
    backend: Literal["memory", "redis"] = "memory"
    ttl_s: float = Field(default=3600, gt=0)
    max_entries: int = Field(default=10_000, ge=1, description="Memory backend: entries kept (LRU).")
    redis_url_env: str = "REDIS_URL"


class CPUEngineSettings(StrictModel):
    model: str = Field(description="Hugging Face model id or local path served on CPU.")
    demo_fallback: bool = Field(
        default=True, description="Build and serve a tiny local demo model when `model` cannot load."
    )
    allow_download: bool = Field(default=False, description="Try the Hugging Face hub when not cached.")
    demo_dir: str | None = Field(
        default=None, description="Where the demo model is built (default: ~/.cache/hybrid-router/demo-model)."
    )
    default_max_tokens: int = Field(default=256, gt=0)
    torch_threads: int | None = Field(default=None, gt=0)


class DisaggregationSettings(StrictModel):
    """Prefill/decode disaggregation with Ray Serve LLM's PD servers and a vLLM KV connector."""

    kv_connector: str = Field(default="NixlConnector", description="vLLM KV transfer connector.")
    prefill_replicas: int = Field(default=1, ge=1)
    decode_replicas: int = Field(default=1, ge=1)
    prefill_max_replicas: int = Field(default=2, ge=1)
    decode_max_replicas: int = Field(default=4, ge=1)


class VLLMModelSettings(StrictModel):
    """How one self-hosted logical model runs on GPUs with vLLM through Ray Serve LLM."""

    model_source: str = Field(description="Hugging Face id (or a path/bucket the GPU nodes can read).")
    accelerator_type: str = Field(default="L4", description="Ray accelerator type, e.g. L4, A100, H100.")
    tensor_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int = Field(gt=0, description="Longest prompt plus completion the engine accepts.")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    quantization: str | None = Field(default=None, description="vLLM quantization, e.g. awq.")
    min_replicas: int = Field(
        default=1, ge=1, description="At least 1: routing only sends to models with a running replica."
    )
    max_replicas: int = Field(default=4, ge=1)
    target_ongoing_requests: int = Field(
        default=16, ge=1, description="Autoscaling target per replica (Serve LLM leaves it unset otherwise)."
    )
    max_ongoing_requests: int = Field(default=64, ge=1)
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="More vLLM engine arguments.")
    disaggregation: DisaggregationSettings | None = None

    @model_validator(mode="after")
    def _bounds(self) -> VLLMModelSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        pd = self.disaggregation
        if pd and (pd.prefill_replicas > pd.prefill_max_replicas or pd.decode_replicas > pd.decode_max_replicas):
            raise ValueError("prefill/decode replicas must not exceed their maximums")
        return self


class VLLMSettings(StrictModel):
    models: dict[str, VLLMModelSettings] = Field(description="Per self-hosted logical model.")


class DeploymentSettings(StrictModel):
    num_replicas: int = Field(default=1, ge=1)
    num_cpus: float = Field(default=1.0, ge=0, description="CPUs Ray reserves per replica (0: none).")
    max_ongoing_requests: int = Field(default=64, ge=1)


class ServingConfig(StrictModel):
    engine: Literal["cpu", "vllm"] = Field(
        default="cpu", description="How self-hosted models run in this profile: cpu (transformers), vllm (GPUs)."
    )
    cpu: CPUEngineSettings | None = None
    vllm: VLLMSettings | None = None
    ingress: DeploymentSettings = Field(default_factory=lambda: DeploymentSettings(num_cpus=0.5))
    cpu_engine: DeploymentSettings = Field(default_factory=lambda: DeploymentSettings(max_ongoing_requests=16))
    cloud_adapters: Literal["in_process", "deployment"] = Field(
        default="in_process",
        description="Run cloud adapters inside the ingress, or as one Serve deployment per provider.",
    )
    adapter: DeploymentSettings = Field(
        default_factory=lambda: DeploymentSettings(num_cpus=0.25, max_ongoing_requests=256)
    )


class RequestLimits(StrictModel):
    """What one request may ask for; beyond it, a clear 4xx instead of work."""

    max_body_bytes: int = Field(default=16_000_000, gt=0, description="Larger bodies get a 413.")
    max_messages: int = Field(default=2_048, gt=0)
    max_message_chars: int = Field(default=8_000_000, gt=0, description="Characters in one message's text.")
    max_tokens_ceiling: int = Field(default=131_072, gt=0, description="Largest max_tokens accepted.")
    n_ceiling: int = Field(default=1, ge=1, description="Largest n accepted (the engines answer one choice).")


class ClientLimits(StrictModel):
    """Per client key, shared by every replica through the budget ledger. None: no limit."""

    daily_budget_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0, description="Prompt plus max_tokens, per minute.")


class AuthConfig(StrictModel):
    """Client API keys (``Authorization: Bearer`` or ``x-api-key``); /health stays open."""

    limits: ClientLimits = Field(default_factory=ClientLimits, description="Every key's limits.")
    key_limits: dict[str, ClientLimits] = Field(
        default_factory=dict, description="Limits for a named key, instead of the default ones."
    )

    enabled: bool = Field(default=False, description="Off for the local profile; turn on anywhere shared.")
    keys_env: str = Field(
        default="ROUTER_API_KEYS", description="Environment variable: comma-separated name:key pairs."
    )
    admin_keys_env: str = Field(default="ROUTER_ADMIN_KEYS", description="The same, for admin keys.")


class LoggingConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    log_prompts: bool = Field(default=False, description="Put prompt text in logs. Off by default.")


class RouterConfig(StrictModel):
    providers: dict[str, ProviderSpec]
    models: dict[str, ModelSpec] = Field(min_length=1)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    strategies: dict[str, CustomStrategy] = Field(default_factory=dict)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
    cost_rules: CostRules = Field(default_factory=CostRules)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    limits: RequestLimits = Field(default_factory=RequestLimits)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)

    def budget_key(self, model: str) -> str:
        name = self.models[model].provider
        return self.providers[name].budget_key or name

    def provider_of(self, model: str) -> ProviderSpec:
        return self.providers[self.models[model].provider]

    def is_self_hosted(self, model: str) -> bool:
        return self.provider_of(model).is_self_hosted


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
    (``self_hosted/mistral-7b-instruct``, as the seed writes) work anywhere a model is named."""
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


PROJECT_ROOT = Path(__file__).resolve().parent.parent
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
        targets = {t for t in (_prune_target(data, err["loc"]) for err in errors)}
        if None in targets or not targets:
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


def _overlaps(path: str, pruned: list[str]) -> bool:
    return any(path == p or path.startswith(p + ".") or p.startswith(path + ".") for p in pruned)


def _declared(raw: dict[str, Any]) -> dict[str, set[str]]:
    """Every name the file declares, valid entry or not: a reference to an invalid one is not
    reported again as unknown."""

    def keys(section: str) -> set[str]:
        value = raw.get(section)
        return {str(k) for k in value} if isinstance(value, dict) else set()

    providers = raw.get("providers") if isinstance(raw.get("providers"), dict) else {}
    budget_keys = {str(p["budget_key"]) for p in providers.values() if isinstance(p, dict) and p.get("budget_key")}
    return {"models": keys("models"), "providers": keys("providers"), "strategies": keys("strategies"),
            "budget_keys": budget_keys}


def _describe(err: Any) -> tuple[str, str]:
    path = ".".join(str(part) for part in err["loc"])
    what = err["msg"]
    if err["type"] == "extra_forbidden":
        what = "unknown key (not part of the config schema)"
    elif "input" in err and not isinstance(err["input"], dict | list):
        what = f"{what} (got {err['input']!r})"
    return path, what


def check_references(
    config: RouterConfig, *, declared: dict[str, set[str]] | None = None, pruned: list[str] | None = None
) -> list[tuple[str, str]]:
    """Every name a config mentions must exist; returns (path, problem) pairs.

    ``declared`` and ``pruned`` come from a file with schema errors, checked without its invalid
    values (``pruned``): a name the file declares counts as existing, and a rule that needs a
    value left out is not checked."""
    from app.routing.conditions import check_condition  # local: routing depends on config

    declared = declared or {}
    pruned = pruned or []

    def intact(*sections: str) -> bool:
        return not any(_overlaps(section, pruned) for section in sections)

    problems: list[tuple[str, str]] = []
    models = set(config.models) | declared.get("models", set())
    providers = set(config.providers) | declared.get("providers", set())
    builtin = {s.lower() for s in BUILTIN_STRATEGIES}
    strategies = set(BUILTIN_STRATEGIES) | set(config.strategies) | declared.get("strategies", set())

    def need_models(path: str, names: list[str]) -> None:
        for i, name in enumerate(names):
            if name not in models:
                problems.append((f"{path}.{i}", f"unknown model {name!r}; expected one of {sorted(models)}"))

    for name, provider in config.providers.items():
        if provider.kind == "openai_compatible" and not provider.base_url:
            problems.append((f"providers.{name}.base_url", "an openai_compatible provider needs its base_url"))
        if provider.self_hosted and provider.kind != "openai_compatible":
            problems.append((f"providers.{name}.self_hosted", "only openai_compatible providers take this flag"))
    for name, spec in config.models.items():
        if spec.provider not in providers:
            problems.append(
                (f"models.{name}.provider", f"unknown provider {spec.provider!r}; expected one of {sorted(providers)}")
            )
        elif spec.provider in config.providers and config.providers[spec.provider].is_self_hosted \
                and spec.pricing.source != "fixed":
            problems.append((f"models.{name}.pricing", "self-hosted models need a fixed price"))
        if spec.quality_role is not None and spec.quality_role not in config.quality.roles and intact("quality"):
            problems.append((f"models.{name}.quality_role",
                             f"unknown role {spec.quality_role!r}; expected one of {sorted(config.quality.roles)}"))
    for branch, names in config.routing.auto.model_dump().items():
        need_models(f"routing.auto.{branch}", names)
    for name, chain in config.routing.fallbacks.items():
        if name not in models:
            problems.append(
                (f"routing.fallbacks.{name}", f"unknown model {name!r}; expected one of {sorted(models)}")
            )
        need_models(f"routing.fallbacks.{name}", chain)
    if config.routing.default_strategy not in strategies:
        problems.append(("routing.default_strategy", f"unknown strategy {config.routing.default_strategy!r}"))
    for sname, strategy in config.strategies.items():
        base = f"strategies.{sname}"
        if sname.lower() in builtin:
            problems.append((base, "a custom strategy cannot reuse a built-in strategy's name (names ignore case)"))
        if strategy.otherwise not in strategies:
            problems.append((f"{base}.otherwise", f"unknown strategy {strategy.otherwise!r}"))
        for i, rule in enumerate(strategy.decision_tree):
            rpath = f"{base}.decision_tree.{i}"
            problems += [(f"{rpath}.condition.{k}", msg) for k, msg in check_condition(rule.condition)]
            need_models(f"{rpath}.action.models", rule.action.models)
            if rule.action.provider and rule.action.provider not in providers:
                problems.append((f"{rpath}.action.provider", f"unknown provider {rule.action.provider!r}"))
            if rule.action.strategy and rule.action.strategy not in strategies:
                problems.append((f"{rpath}.action.strategy", f"unknown strategy {rule.action.strategy!r}"))
    problems += _alias_clashes(config)
    budget_keys = {p.budget_key or n for n, p in config.providers.items()} | {"total"}
    budget_keys |= declared.get("providers", set()) | declared.get("budget_keys", set())
    for key in config.cost_rules.daily_budgets:
        if key not in budget_keys:
            problems.append((f"cost_rules.daily_budgets.{key}", f"unknown budget key; expected one of {sorted(budget_keys)}"))
    problems += _delegation_cycles(config)
    models_ok = intact("models", "providers") and not [p for p in problems if p[0].startswith("models.")]
    in_app = [m for m in config.models if config.provider_of(m).runs_in_this_app] if models_ok else []
    if config.serving.engine == "cpu" and config.serving.cpu is None and in_app and intact("serving"):
        problems.append(("serving.cpu", "the cpu engine needs its settings (model, demo_fallback)"))
    if config.serving.engine == "vllm" and models_ok and intact("serving"):
        served = set(config.serving.vllm.models) if config.serving.vllm else set()
        for name in sorted(set(in_app) - served):
            problems.append((f"serving.vllm.models.{name}", "a self-hosted model needs its vLLM settings"))
        for name in sorted(served - set(in_app)):
            problems.append((f"serving.vllm.models.{name}", "not a self-hosted model of the catalog"))
    return problems


def _delegation_cycles(config: RouterConfig) -> list[tuple[str, str]]:
    """Custom strategies that hand over to each other in a loop would never decide."""
    edges = {
        name: {s.otherwise} | {r.action.strategy for r in s.decision_tree if r.action.strategy}
        for name, s in config.strategies.items()
    }
    problems = []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    problems.append((f"strategies.{start}", "delegates in a loop: " + " -> ".join([*path, nxt])))
                    stack.clear()
                    break
                if nxt in edges and nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return problems


def _alias_clashes(config: RouterConfig) -> list[tuple[str, str]]:
    """Names resolve case-insensitively, so clashes are found that way too."""
    seen: dict[str, str] = {name.lower(): name for name in config.models}
    problems = []
    for name, spec in config.models.items():
        for i, alias in enumerate(spec.aliases):
            owner = seen.setdefault(alias.lower(), name)
            if owner != name:
                problems.append((f"models.{name}.aliases.{i}", f"{alias!r} already names {owner!r}"))
    strategies: dict[str, str] = {}
    for strategy in config.strategies:
        if strategy.lower() in seen:
            problems.append((f"strategies.{strategy}", f"{strategy!r} is also a model name"))
        other = strategies.setdefault(strategy.lower(), strategy)
        if other != strategy:
            problems.append((f"strategies.{strategy}", f"{strategy!r} and {other!r} differ only in case"))
    return problems
