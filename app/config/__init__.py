"""The router config: one YAML file, validated strictly at start-up.

Unknown keys, wrong types, values out of range and dangling references (a fallback naming a
model that does not exist) stop start-up with a ``ConfigError`` naming the file, each field's
path and what was expected: every problem in one pass, each once (the cross-checks run on what
is still readable around the schema's errors). ``python -m app.check_config`` runs the same
check offline. The file's sections: ``providers``, ``models`` (the catalog), ``routing`` (strategy
defaults, the ``auto`` tree's thresholds and targets, fallback chains), ``strategies`` (custom
decision trees), ``serving`` (how this profile runs the self-hosted engines) and ``logging``.

The package: ``schema`` (the models), ``loading`` (file to config, ``ConfigError``), ``checks``
(cross-references). Everything public is importable from ``app.config`` itself.
"""

from app.config.checks import check_references
from app.config.loading import (
    DEFAULT_CONFIG,
    PROJECT_ROOT,
    ConfigError,
    load_config,
    name_table,
    parse_config,
    resolve_config_path,
    resolve_name,
    shared_ids,
)
from app.config.schema import (
    BUILTIN_STRATEGIES,
    DEFAULT_KEY_PREFIX,
    DEFAULT_LEDGER_PATH,
    AlertRule,
    AuthConfig,
    AutoTargets,
    AutoThresholds,
    CacheConfig,
    CircuitBreakerConfig,
    ClientLimits,
    CostRules,
    CPUEngineSettings,
    CustomStrategy,
    DecisionRule,
    DeploymentSettings,
    DisaggregationSettings,
    LedgerConfig,
    LoggingConfig,
    ModelSpec,
    ModelWeights,
    Pricing,
    ProviderSpec,
    QualityConfig,
    RequestLimits,
    ResilienceConfig,
    RetryConfig,
    RouterConfig,
    RoutingConfig,
    RuleAction,
    ServingConfig,
    StrategyWeights,
    StrictModel,
    VLLMModelSettings,
    VLLMSettings,
    WebhookConfig,
)

__all__ = [
    "BUILTIN_STRATEGIES",
    "DEFAULT_CONFIG",
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_LEDGER_PATH",
    "PROJECT_ROOT",
    "AlertRule",
    "AuthConfig",
    "AutoTargets",
    "AutoThresholds",
    "CPUEngineSettings",
    "CacheConfig",
    "CircuitBreakerConfig",
    "ClientLimits",
    "ConfigError",
    "CostRules",
    "CustomStrategy",
    "DecisionRule",
    "DeploymentSettings",
    "DisaggregationSettings",
    "LedgerConfig",
    "LoggingConfig",
    "ModelSpec",
    "ModelWeights",
    "Pricing",
    "ProviderSpec",
    "QualityConfig",
    "RequestLimits",
    "ResilienceConfig",
    "RetryConfig",
    "RouterConfig",
    "RoutingConfig",
    "RuleAction",
    "ServingConfig",
    "StrategyWeights",
    "StrictModel",
    "VLLMModelSettings",
    "VLLMSettings",
    "WebhookConfig",
    "check_references",
    "load_config",
    "name_table",
    "parse_config",
    "resolve_config_path",
    "resolve_name",
    "shared_ids",
]
