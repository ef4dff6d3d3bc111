"""Quality-based routing: the predictor, its training, the `auto` decision, the knob and its calibration."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from app.config import ConfigError, parse_config
from app.routing.quality import train
from app.routing.quality.calibrate import Calibrator, pick, sample_features
from app.routing.quality.features import NAMES, split_options, vectorize
from app.routing.quality.model import DEFAULT_MODEL_PATH, QualityModel, QualityPredictor
from tests.support.wiring import app_client, log_records, make_service

from .conftest import user

MATH = (
    "A store sells pencils at $0.35 each and pens at $1.20 each. Maria buys 12 pencils and 5 pens and pays "
    "with a $20 bill. How much change does she get?"
)
ROLES = {"small": ["weak"], "large": ["strong"]}


def plan(router, text: str, strategy: str = "auto", margin: float | None = None):
    features = replace(router.analyzer.analyze(user(text)), quality_margin=margin)
    return router.planner.plan(features, strategy)


# --- features -------------------------------------------------------------------------------------------


def test_features_have_one_value_per_name_and_are_deterministic():
    assert len(vectorize(MATH)) == len(NAMES)
    assert vectorize(MATH) == vectorize(MATH)


def test_answer_options_are_split_from_the_stem():
    stem, options = split_options("Which gas is inert?\nA. Oxygen\nB. Argon\nC. Hydrogen")
    assert stem.strip() == "Which gas is inert?" and options == ["Oxygen", "Argon", "Hydrogen"]


def test_calculation_shows_in_the_numeric_features():
    calc, plain = (
        dict(zip(NAMES, vectorize(MATH))),
        dict(zip(NAMES, vectorize("Tell me about the history of Rome"))),
    )
    for name in ("numbers", "number_density", "calc_words", "units"):
        assert calc[name] > plain[name], name


def test_a_lone_surrogate_does_not_break_the_features():
    assert len(vectorize("broken \ud800 text")) == len(NAMES)


# --- the shipped model and the predictor ----------------------------------------------------------------


def test_the_shipped_model_predicts_every_role_as_a_probability():
    model = QualityModel.load()
    assert set(model.roles) == {"small", "mid", "large"}
    for text in (MATH, "Write a haiku about the sea", "x" * 50_000):
        assert all(0 < p < 1 for p in model.predict(vectorize(text)).values())


def test_the_shipped_model_rates_premium_above_the_7b_model():
    predicted = QualityModel.load().predict(vectorize(MATH))
    assert predicted["large"] > predicted["mid"] > predicted["small"]


def test_a_model_trained_on_other_features_is_refused():
    data = json.loads(DEFAULT_MODEL_PATH.read_text())
    data["features"] = data["features"][:-1]
    with pytest.raises(ValueError, match="retrain"):
        QualityModel.from_dict(data)


def test_a_role_the_model_lacks_is_refused():
    with pytest.raises(ValueError, match="not in the trained model"):
        QualityPredictor(QualityModel.load(), {"m": "huge"})


def test_a_catalog_role_missing_from_the_roles_is_a_config_error(raw_config):
    raw_config["models"]["gpt"]["quality_role"] = "giant"
    with pytest.raises(ConfigError, match=r"models\.gpt\.quality_role"):
        parse_config(raw_config)


# --- training ---------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def toy_rows() -> list[dict]:
    """The weak model answers plain questions and fails calculations; the strong one answers both."""
    rows = []
    for i in range(40):
        rows.append(
            {
                "prompt": f"Compute {i} * {i + 7} + {3 * i} = ? Give the number.",
                "correct": {"weak": 0, "strong": 1},
            }
        )
        rows.append(
            {"prompt": f"Who wrote the novel number {i} of the library?", "correct": {"weak": 1, "strong": 1}}
        )
    return rows


def test_training_learns_which_prompts_the_weak_model_fails_and_is_deterministic(tmp_path):
    data = write_jsonl(tmp_path / "toy.jsonl", toy_rows())
    first, second = train.train(ROLES, [data]), train.train(ROLES, [data])
    assert first.as_dict() == second.as_dict()
    calc = first.predict(vectorize("Compute 12 * 19 + 4 = ?"))
    recall = first.predict(vectorize("Who wrote the novel Middlemarch?"))
    assert calc["small"] < 0.5 < recall["small"]
    assert calc["large"] > 0.5 and recall["large"] > 0.5


def test_judge_scores_become_soft_labels():
    assert train.outcomes_of({"score": {"a": 10, "b": 1, "c": -1}}) == {"a": 1.0, "b": 0.0}
    assert train.role_labels({"a": 1.0, "b": 0.0}, {"r": ["a", "b"], "s": ["x"]}) == {"r": 0.5}


def test_feedback_moves_its_models_prediction(tmp_path):
    data = write_jsonl(tmp_path / "toy.jsonl", toy_rows())
    recall = vectorize("Who wrote the novel Middlemarch?")
    feedback = [{"model": "cheap", "score": 0.0, "features": {"quality_inputs": recall}}] * 200
    before = train.train(ROLES, [data]).predict(recall)["small"]
    after = train.train(ROLES, [data], feedback, {"cheap": "small"}).predict(recall)["small"]
    assert after < before - 0.2


def test_the_training_command_writes_a_loadable_model(tmp_path, capsys):
    data = write_jsonl(tmp_path / "toy.jsonl", toy_rows())
    config = tmp_path / "router.yaml"
    config.write_text(
        Path("deployments/configs/router.yaml")
        .read_text()
        .replace("small: [Mistral-7B-Instruct-v0.2, mistralai/Mistral-7B-Instruct-v0.1]", "small: [weak]")
        .replace("mid: [gemini-1.5-flash-002, gpt-3.5-turbo-1106]", "mid: [strong]")
        .replace("large: [gemini-1.5-pro-002, gpt-4-1106-preview]", "large: [strong]")
    )
    out = tmp_path / "model.json"
    train.main(["--config", str(config), "--data", str(data), "--out", str(out)])
    assert set(QualityModel.load(out).roles) == {"small", "mid", "large"}
    assert "80 rows" in capsys.readouterr().out


# --- the auto decision --------------------------------------------------------------------------------------


def test_auto_takes_the_cheapest_model_within_the_margin(router):
    tight = plan(router, MATH, margin=0.0)
    loose = plan(router, MATH)
    q = tight.quality
    best = max(q.values())
    assert q[tight.primary.model] == best  # margin 0: the best predicted model (its cheapest)
    assert tight.primary.model == "gemini-pro"  # the cheapest of the premium role
    assert q[loose.primary.model] >= best - router.config.quality.margin
    assert tight.margin == 0.0


def test_margin_one_takes_the_cheapest_fitting_model_and_keeps_its_fallback_chain(router):
    p = router.planner.plan(replace(router.analyzer.analyze(user(MATH)), quality_margin=1.0), "auto")
    assert p.primary.model == "mistral-7b-instruct"
    assert [t.model for t in p.fallbacks] == router.catalog.fallbacks("mistral-7b-instruct")[:3]
    assert "within 1 of the best" in p.primary.reason


def test_auto_chooses_among_available_models_only(router):
    features = replace(router.analyzer.analyze(user(MATH)), quality_margin=0.0)
    p = router.planner.plan(features, "auto", lambda m: "breaker open" if m == "gemini-pro" else None)
    assert p.primary.model == "claude-sonnet"  # the next cheapest premium model
    assert ("gemini-pro", "breaker open") in p.dropped


def test_quality_covers_every_model_that_fits_and_only_those(router):
    p = plan(router, MATH)
    assert set(p.quality) == set(router.catalog.models)
    image = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ]
    }
    vision = router.planner.plan(router.analyzer.analyze(image), "auto")
    assert set(vision.quality) == {
        m for m in router.catalog.models if router.catalog.has_capability(m, "vision")
    }


def test_code_generation_looks_at_code_capable_models(router):
    p = plan(router, "Implement a thread-safe LRU cache in Python with unit tests", margin=1.0)
    assert router.catalog.has_capability(p.primary.model, "code")
    assert p.primary.model == "codellama-13b"


def test_long_prompts_keep_the_context_branch(router):
    doc = "Revenue grew in every region this quarter. " * 15000
    p = plan(router, doc + "Summarize the key points.")
    assert p.primary.model == "gemini-pro" and "long context" in p.primary.reason


def test_rules_is_the_keyword_tree(router):
    assert plan(router, "Write a Python REST API with FastAPI", "rules").primary.model == "codellama-13b"


# --- the knob, through the API --------------------------------------------------------------------------


@pytest.fixture
def client():
    with app_client(make_service()) as test_client:
        yield test_client


def route(client, **body):
    return client.post(
        "/v1/route?assume_available=true", json={"messages": [{"role": "user", "content": MATH}], **body}
    )


def test_route_answers_quality_per_model_and_the_margin_used(client):
    answer = route(client, model="auto").json()
    assert set(answer["quality"]) >= {"mistral-7b-instruct", "gemini-flash", "gemini-pro"}
    assert all(0 <= p <= 1 for p in answer["quality"].values())
    assert answer["quality_margin"] == 0.5 and len(answer["features"]["quality_inputs"]) == len(NAMES)


@pytest.mark.parametrize(
    "body", [{"model": "auto:0"}, {"model": "auto", "quality_margin": 0}, {"model": "AUTO:0.0"}]
)
def test_the_margin_can_be_set_per_request(client, body):
    answer = route(client, **body).json()
    assert answer["quality_margin"] == 0.0 and answer["model"] == "gemini-pro"


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "auto", "quality_margin": 1.5}, "quality_margin"),
        ({"model": "auto:0.2", "quality_margin": 0.3}, "quality_margin"),
    ],
)
def test_a_bad_margin_is_a_400_naming_it(client, body, param):
    answer = route(client, **body)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param


# --- calibration ----------------------------------------------------------------------------------------


def test_calibration_trades_premium_calls_for_margin(config, tmp_path):
    rows = [
        json.loads(line) for line in Path("data/routing/mmlu_pro_train.jsonl").read_text().splitlines()[:60]
    ]
    calibrator = Calibrator(config)
    samples = sample_features(rows, calibrator_analyzer(config))
    curve = [calibrator.point(samples, m) for m in (0.0, 0.25, 0.5, 1.0)]
    shares = [p.premium_share for p in curve]
    costs = [p.usd_per_1k for p in curve]
    assert shares == sorted(shares, reverse=True) and costs == sorted(costs, reverse=True)
    assert shares[0] > 0.5 and shares[-1] == 0.0
    chosen = pick(curve, premium_share=0.2)
    assert (
        chosen is not None
        and chosen.premium_share <= 0.2
        and chosen.margin == min(p.margin for p in curve if p.premium_share <= 0.2)
    )


def test_calibration_reads_route_decision_logs(config):
    from app.routing.analysis import Analyzer

    features = Analyzer(config.routing.thresholds).analyze(user(MATH))
    record = {"event": "route_decision", "features": {**features.as_dict(), "metadata": []}}
    (parsed,) = sample_features([record], Analyzer(config.routing.thresholds))
    assert parsed.quality_inputs == pytest.approx(features.quality_inputs, abs=1e-4)
    assert Calibrator(config).choices([parsed], 0.0) == Calibrator(config).choices([features], 0.0)


def calibrator_analyzer(config):
    from app.routing.analysis import Analyzer

    return Analyzer(config.routing.thresholds)


def test_route_decision_log_carries_the_predicted_quality_and_margin(client):
    with log_records() as records:
        answer = client.post(
            "/v1/chat/completions",
            json={"model": "auto:0.3", "messages": [{"role": "user", "content": MATH}]},
        )
    assert answer.status_code == 200
    (line,) = [r for r in records if r.get("event") == "route_decision"]
    plan = route(client, model="auto:0.3").json()
    assert line["model"] == answer.json()["model"] == plan["model"]
    assert line["quality"] == plan["quality"][line["model"]] and line["quality_margin"] == 0.3
    assert MATH[:20] not in json.dumps(line)
