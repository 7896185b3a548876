from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness.cells import expand, parse_shard
from harness.cli import main
from harness.errors import UserError
from harness.plan import PlanError, default_plan, load_plan

GOOD = """
name = "nightly"

[[models]]
source = "tiny"
img_size = 32

[[exports]]
format = "onnx"

[[exports]]
format = "executorch"
precision = "int8"

[[targets]]
name = "host"
devices = ["host"]

[measure]
min_iterations = 20
min_seconds = 0.5

[budgets]
latency_ms = 50
percentile = 90

[[budgets.devices]]
device = "host"
latency_ms = 20
"""


def _write(tmp_path, text):
    p = tmp_path / "plan.toml"
    p.write_text(text)
    return p


def test_a_good_plan_expands_to_its_matrix(tmp_path):
    plan = load_plan(_write(tmp_path, GOOD))
    assert (
        plan.name == "nightly" and plan.exports[1].delegate == "xnnpack"
    )  # executorch defaults to xnnpack
    assert (
        plan.budgets.latency_for("host", "host") == 20
        and plan.budgets.latency_for("aihub", "x") == 50
    )
    cells, _ = expand(plan)
    assert len(cells) == 2 and {c.export.label for c in cells} == {
        "onnx",
        "executorch/xnnpack/int8",
    }
    assert len({c.key for c in cells}) == 2
    # the same plan gives the same hash and keys; a change of settings changes them
    again, _ = expand(load_plan(_write(tmp_path, GOOD)))
    assert [c.key for c in again] == [c.key for c in cells]
    other = load_plan(_write(tmp_path, GOOD.replace("min_seconds = 0.5", "min_seconds = 1.0")))
    assert other.hash != plan.hash and expand(other)[0][0].key not in {c.key for c in cells}


def test_default_plan_is_the_xray_pair_and_lite_and_tiny_on_the_host():
    plan = default_plan()
    assert [m.source for m in plan.models] == ["xray-teacher", "xray-student", "lite", "tiny"]
    assert plan.teacher_of(plan.models[1]) == plan.models[0]
    assert plan.teacher_of(plan.models[0]) is None
    # accuracy on the packaged X-rays for the pair; lite and tiny cannot take that data
    assert plan.accuracy.data == "builtin:pneumonia" and plan.accuracy.split == "test"
    assert [m.accuracy for m in plan.models] == [True, True, False, False]
    assert plan.budgets.accuracy_retention == 0.95 and plan.budgets.compression_retention == 0.93
    assert {e.label for e in plan.exports} == {
        "onnx",
        "executorch/xnnpack/fp32",
        "executorch/xnnpack/int8",
        "pt2",
    }
    assert next(e for e in plan.exports if e.precision == "int8").calibration == (
        "builtin:pneumonia"
    )
    cells, _ = expand(plan)
    assert len(cells) == 16 and all(c.target.name == "host" and not c.problem for c in cells)


def test_teacher_and_accuracy_judge_a_model_without_changing_its_cells(tmp_path):
    """Naming a teacher or the default accuracy = true leaves the cells' keys (their history)
    and, for the latter, the plan's hash as they were; a teacher must be another plan model."""
    plan = load_plan(_write(tmp_path, GOOD))
    cells, _ = expand(plan)
    same = load_plan(
        _write(tmp_path, GOOD.replace("img_size = 32", "img_size = 32\naccuracy = true"))
    )
    assert same.hash == plan.hash and [c.key for c in expand(same)[0]] == [c.key for c in cells]
    two = GOOD.replace(
        "img_size = 32",
        'img_size = 32\n\n[[models]]\nsource = "lite"\nimg_size = 32\nteacher = "tiny"',
    )
    taught = load_plan(_write(tmp_path, two))
    assert taught.teacher_of(taught.models[1]) == taught.models[0]
    tiny_keys = {c.key for c in expand(taught)[0] if c.model.source == "tiny"}
    assert tiny_keys == {c.key for c in cells}
    with pytest.raises(PlanError, match=r"models\[1\]\.teacher: 'vit-large' is not another model"):
        load_plan(_write(tmp_path, two.replace('teacher = "tiny"', 'teacher = "vit-large"')))
    with pytest.raises(
        PlanError, match="'lite' is not another model of this plan; its models: tiny"
    ):
        load_plan(_write(tmp_path, two.replace('teacher = "tiny"', 'teacher = "lite"')))


@pytest.mark.parametrize(
    "change, fragments",
    [
        (
            ('precision = "int8"', 'precision = "int4"'),
            ["exports[1].precision", "'int4' is not allowed", "fp32, fp16, int8", ":13:"],
        ),
        (
            ('format = "onnx"', 'format = "tflite"'),
            ["exports[0].format", "'tflite' is not allowed", "onnx"],
        ),
        (
            ("min_iterations = 20", "min_iterations = -3"),
            ["measure.min_iterations", "positive integer", ":20:"],
        ),
        (
            ("min_iterations = 20", "min_iterations = 20\nmax_iterations = 10"),
            ["measure.max_iterations", "at least min_iterations (20)"],
        ),
        (
            ('name = "host"', 'name = "phone"'),
            ["targets[0].name", "'phone' is not allowed", "host"],
        ),
        (("percentile = 90", "percentile = 99"), ["budgets.percentile", "one of 50, 90"]),
        (
            ('format = "onnx"', 'format = "onnx"\nprecision = "int8"'),
            ["exports[0].precision", "onnx does not take int8"],
        ),
        (("img_size = 32", "img_sise = 32"), ["models[0].img_sise", "unknown field", "img_size"]),
        (
            ('device = "host"', 'device = "pixel-8"'),
            ["budgets.devices[0].device", "'pixel-8' is not a device this plan runs", "host"],
        ),
        (('name = "nightly"', ""), ["name", "missing"]),
    ],
)
def test_invalid_plans_name_the_field_line_and_what_is_allowed(tmp_path, change, fragments):
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(PlanError) as err:
        load_plan(path)
    for f in fragments:
        assert f in str(err.value), (f, str(err.value))


def test_plan_check_cli(tmp_path):
    res = CliRunner().invoke(main, ["plan", "check", str(_write(tmp_path, GOOD))])
    assert (
        res.exit_code == 0 and "2 cells" in res.output and "executorch/xnnpack/int8" in res.output
    )
    res = CliRunner().invoke(
        main, ["plan", "check", str(_write(tmp_path, "name = 'x'\n[[models]]\n"))]
    )
    assert (
        res.exit_code == 2
        and res.output.startswith("vitbench: error: ")
        and "Traceback" not in res.output
    )
    res = CliRunner().invoke(main, ["plan", "check", str(tmp_path / "none.toml")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = CliRunner().invoke(main, ["plan", "check", str(_write(tmp_path, "name = [unclosed"))])
    assert res.exit_code == 2 and "not valid TOML" in res.output


def test_shards():
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) == (1, 1)
    for bad in ("0/3", "4/3", "x", "1-3"):
        with pytest.raises(UserError):
            parse_shard(bad)
