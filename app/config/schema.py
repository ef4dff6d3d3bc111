"""The router config's schema: one strict pydantic model per section, every field described.

Unknown keys, wrong types and values out of range are refused here; names that must exist and
rules between fields are checked by ``app.config.checks``; ``app.config.loading`` reads the file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    prompt_cache: bool = Field(
        default=True,
        description="Use the provider's prompt caching for its models (a model's `prompt_cache` overrides): "
        "Anthropic `cache_control` breakpoints placed on long stable prefixes, OpenAI a `prompt_cache_key` "
        "derived from the prefix, Vertex AI explicit context caches for long prefixes its implicit cache was "
        "seen to miss on a repeat (implicit first). Caching the provider does by itself (OpenAI's, Gemini's "
        "implicit) is reported and priced either way.",
    )
    prompt_cache_ttl_s: float = Field(
        default=600,
        gt=0,
        description="Vertex AI: how long an explicit context cache lives (its storage is billed for all of "
        "it), and the longest gap between two sightings of a prefix for the second to count as a repeat "
        "(a repeat the implicit cache missed calls for a context cache). Also how long cache affinity "
        "keeps a prefix on a Vertex AI model with prompt caching on, and on a self-hosted model (vLLM's "
        "prefix cache).",
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
    cache_storage_per_million_hour: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="USD per 1M tokens per hour of explicit context-cache storage (Vertex AI Gemini; "
        "genai-prices has no such price). Default: Google's list price, 4.50 for Pro models, 1.00 for "
        "other Gemini models, 0 for the rest.",
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
    typical_latency_ms: int = Field(
        gt=0,
        description="Typical time to the first token, for planning: the prior of the live statistics "
        "until real traffic has measured the model (`load`).",
    )
    typical_tokens_per_s: float = Field(
        default=50.0,
        gt=0,
        description="Typical output tokens per second while decoding: the live statistics' prior.",
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        description="Self-hosted: requests one replica serves at once before the next one queues, "
        "until the engine reports its own (the CPU engine: 1; vLLM: its target_ongoing_requests).",
    )
    aliases: list[str] = Field(default_factory=list, description="Other names that resolve here.")
    description: str = ""
    quality_role: str | None = Field(
        default=None,
        description="Which role of the quality predictor stands for this model (a key of `quality.roles`); "
        "models without one are never chosen by quality.",
    )
    prompt_cache: bool | None = Field(
        default=None, description="Prompt caching for this model; None: its provider's `prompt_cache`."
    )
    prompt_cache_min_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Shortest prefix (estimated tokens) worth caching. Default by model: Anthropic 2048 for "
        "Haiku, 1024 for the others; Vertex AI explicit caches 4096 for Pro, 2048 for the others "
        "(Vertex's floor); OpenAI 1024.",
    )


class AutoThresholds(StrictModel):
    """Thresholds of the keyword decision tree (``rules``), whose context and latency branches
    ``auto`` keeps."""

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
    cache_affinity: bool = Field(
        default=True,
        description="A request whose long prefix a model recently answered prefers that model while its "
        "provider keeps the prefix cached, where the strategy allows it and it is no dearer (app.routing."
        "affinity).",
    )
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


class SpillStrategy(StrictModel):
    """Spill-over for one strategy: whether it may move a request off a busy model, and the latency
    need of a request that states none."""

    enabled: bool = True
    first_token_ms: int | None = Field(
        default=None,
        gt=0,
        description="Default need: the first token within this many ms, queueing included. None: only a "
        "request's own `max_latency_ms` (or metadata latency need) can make it spill.",
    )


def _default_spill() -> dict[str, SpillStrategy]:
    return {
        "auto": SpillStrategy(first_token_ms=4_000),
        "balanced": SpillStrategy(first_token_ms=4_000),
        "fast": SpillStrategy(first_token_ms=1_500),
        "quality": SpillStrategy(first_token_ms=8_000),
    }


class LoadConfig(StrictModel):
    """Load-aware routing: live statistics per model, and spill-over off busy self-hosted models.

    A request needs its first token within its latency need (a stream's, and any request's default
    need) or, when it stated ``max_latency_ms`` itself and is not a stream, or asks for a long
    answer, its whole answer. A candidate whose estimate misses the need is passed over for the
    next one that meets it; passed-over models stay in the plan as last fallbacks."""

    stats_half_life_s: float = Field(
        default=120.0, gt=0, description="Live statistics forget a sample's weight by half in this time."
    )
    poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often every ingress replica reads the engines' own load."
    )
    spill: dict[str, SpillStrategy] = Field(
        default_factory=_default_spill,
        description="Per strategy (built-in or custom). A strategy not named spills only for a request's "
        "own latency need; `self_hosted_only` and explicit models never spill.",
    )
    spill_band: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Hysteresis: once a model spills, it takes requests again only where its estimate is "
        "under (1 - band) of the need...",
    )
    spill_cool_down_s: float = Field(
        default=30.0,
        ge=0,
        description="...and it leaves the spilling state after that has held this long.",
    )
    long_answer_tokens: int = Field(
        default=1_024,
        gt=0,
        description="A request expecting at least this many output tokens is judged by its whole answer.",
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
    """The circuit breaker, one per backend (the routing guide's settings by default)."""

    enabled: bool = True
    failure_threshold: int = Field(default=5, ge=1, description="Failures in a row before opening.")
    timeout_seconds: float = Field(default=60, gt=0, description="How long open before half-open probing.")
    half_open_requests: int = Field(default=3, ge=1, description="Probe requests allowed while half-open.")


class RetryConfig(StrictModel):
    attempts: int = Field(default=2, ge=1, description="Tries per target, the first included.")
    base_delay_s: float = Field(default=0.25, ge=0, description="First backoff; doubles each retry. 0: none.")
    max_delay_s: float = Field(
        default=4.0,
        ge=0,
        description="Longest wait for one target (a longer Retry-After moves on); 0: retry at once.",
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
    """``cost_rules``: daily budgets per provider (by budget key) and in total, with their alerts."""

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


DEFAULT_LEDGER_PATH = "~/.cache/hybrid-router/ledger.db"
DEFAULT_KEY_PREFIX = "hybrid-router"


class LedgerConfig(StrictModel):
    backend: Literal["sqlite", "redis"] = Field(
        default="sqlite",
        description="sqlite: one node (replicas share the file); redis: replicas across nodes.",
    )
    path: str = Field(default=DEFAULT_LEDGER_PATH, description="The SQLite file.")
    redis_url_env: str = Field(default="REDIS_URL", description="Environment variable with the Redis URL.")
    key_prefix: str = DEFAULT_KEY_PREFIX


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
        default=None,
        description="Where the demo model is built (default: ~/.cache/hybrid-router/demo-model).",
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
        default=16,
        ge=1,
        description="Autoscaling target per replica (Serve LLM leaves it unset otherwise); also the "
        "capacity the replica reports to the router, past which requests spill (`load`).",
    )
    max_ongoing_requests: int = Field(default=64, ge=1)
    upscale_delay_s: float = Field(
        default=15.0,
        ge=0,
        description="Serve adds replicas once the load has stayed over the target this long; spill-over "
        "carries the excess meanwhile and until the new replica is ready (docs/operations.md, Bursts).",
    )
    downscale_delay_s: float = Field(
        default=300.0,
        ge=0,
        description="Serve removes replicas once the load has stayed under the target this long: longer "
        "than `load.spill_cool_down_s`, so traffic returns to the replicas before they leave.",
    )
    look_back_period_s: float = Field(
        default=15.0,
        gt=0,
        description="The window Serve averages the requests in flight over, for its decisions.",
    )
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="More vLLM engine arguments.")
    disaggregation: DisaggregationSettings | None = None

    @model_validator(mode="after")
    def _bounds(self) -> VLLMModelSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        pd = self.disaggregation
        if pd and (
            pd.prefill_replicas > pd.prefill_max_replicas or pd.decode_replicas > pd.decode_max_replicas
        ):
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
        default="cpu",
        description="How self-hosted models run in this profile: cpu (transformers), vllm (GPUs).",
    )
    cpu: CPUEngineSettings | None = None
    vllm: VLLMSettings | None = None
    ingress: DeploymentSettings = Field(default_factory=lambda: DeploymentSettings(num_cpus=0.5))
    cpu_engine: DeploymentSettings = Field(
        default_factory=lambda: DeploymentSettings(max_ongoing_requests=16)
    )
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
    tokens_per_minute: int | None = Field(
        default=None, gt=0, description="Prompt plus max_tokens, per minute."
    )


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
    load: LoadConfig = Field(default_factory=LoadConfig)

    def budget_key(self, model: str) -> str:
        name = self.models[model].provider
        return self.providers[name].budget_key or name

    def provider_of(self, model: str) -> ProviderSpec:
        return self.providers[self.models[model].provider]

    def is_self_hosted(self, model: str) -> bool:
        return self.provider_of(model).is_self_hosted
