"""The built-in X-ray pair: shipped weights that match their card, presets by name, the
packaged data, and the card check of `nox -s builtin-models`."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.model import count_params, load_model
from harness.model.builtin import CARD_JSON, TRAINED, trained_path
from harness.model.builtin.build import check
from harness.model.builtin.card import render_card

CARD = json.loads(CARD_JSON.read_text())


def _run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


@pytest.mark.parametrize("name", list(TRAINED))
def test_the_shipped_weights_are_the_cards(name):
    shipped = CARD["models"][name]
    weights = (trained_path(name) / "model.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == shipped["weights_sha256"]
    assert len(weights) < 6e6  # small enough to ship
    net = load_model(name)
    assert count_params(net.config) == shipped["parameters"]
    assert net.config.decision_threshold == shipped["decision_threshold"]
    assert net.config.threshold_rule == "youden"


def test_the_student_is_8x_smaller_and_keeps_the_teachers_auc():
    t, s = CARD["models"]["xray-teacher"], CARD["models"]["xray-student"]
    assert t["parameters"] / s["parameters"] >= 7.5
    assert CARD["data"]["sha256"].startswith("f36c2b3e")
    assert t["metrics"]["test"]["auc"]["value"] > 0.85
    assert CARD["retention"]["auc"] > 0.9


def test_eval_of_the_shipped_student_gives_the_cards_test_numbers():
    code, out = _run("eval", "xray-student", "--data", "builtin:pneumonia", "--json")
    assert code == 0, out
    res = json.loads(out)
    got = {m["name"]: m["value"] for m in res["metrics"] + res["operating_point"]["metrics"]}
    for metric, ref in CARD["models"]["xray-student"]["metrics"]["test"].items():
        assert got[metric] == pytest.approx(ref["value"], abs=1e-6), metric


def test_models_lists_the_pair():
    code, out = _run("models")
    assert code == 0 and "xray-teacher" in out and "xray-student" in out and "xray-small" in out
    code, out = _run("models", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["xray-student"]["params"] == CARD["models"]["xray-student"]["parameters"]


def test_the_card_check_names_what_moved():
    assert check(CARD, CARD) == []
    moved = copy.deepcopy(CARD)
    auc = moved["models"]["xray-student"]["metrics"]["test"]["auc"]
    auc["value"] = auc["ci_low"] - 0.01
    (problem,) = check(moved, CARD)
    assert problem.startswith("xray-student test auc: rebuilt")
    assert "xray-student" in render_card(CARD) and "CC BY 4.0" in render_card(CARD)
