"""What the command modules share: JSON output, the model, store and data options, and the
small parsers behind them."""

from __future__ import annotations

import json
from typing import Any

import click

from harness.errors import UserError


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def model_options(fn):
    """Options that shape a preset or an imported checkpoint (ignored for nothing: a vitbench
    checkpoint folder refuses them)."""
    fn = click.option(
        "--head-dim",
        type=click.IntRange(min=1),
        default=None,
        help="Head dimension when importing timm weights (default: a config.json beside "
        "them, else timm's architecture table, else 64 with a warning).",
    )(fn)
    fn = click.option(
        "--img-size",
        type=click.IntRange(min=1),
        default=None,
        help="Input resolution (a checkpoint's pos_embed is resampled bicubically).",
    )(fn)
    fn = click.option(
        "--num-classes",
        type=click.IntRange(min=1),
        default=None,
        help="Output classes (presets; imports get a fresh head).",
    )(fn)
    fn = click.option(
        "--in-chans",
        type=click.IntRange(min=1),
        default=None,
        help="Input channels: 1 for X-ray, 3 for colour.",
    )(fn)
    return fn


def model_overrides(in_chans, num_classes, img_size, head_dim) -> dict[str, Any]:
    out = {"in_chans": in_chans, "num_classes": num_classes, "img_size": img_size}
    if head_dim is not None:
        out["head_dim"] = head_dim
    return out


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE pairs; values are JSON when they parse as JSON (numbers, true, lists), else
    text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--option {pair!r}: expected KEY=VALUE (e.g. chipset=SM8650)")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


store_option = click.option(
    "--store",
    "store_url",
    default=None,
    metavar="URL",
    help="Results store: a file path or postgresql://... "
    "(default: $VITBENCH_STORE or ./vitbench-results.db).",
)


def data_options(fn):
    fn = click.option("--frontal-only", is_flag=True, help="CheXpert: frontal views only.")(fn)
    fn = click.option(
        "--uncertain",
        type=click.Choice(["ones", "zeros", "ignore"]),
        default="ones",
        show_default=True,
        help="CheXpert uncertain (-1) labels: U-Ones, U-Zeros or U-Ignore.",
    )(fn)
    fn = click.option(
        "--data",
        "data",
        required=True,
        help="Data set: a folder or .npz (layout detected), LAYOUT:PATH "
        "(chexpert, aptos2019, isic2019, busi, medmnist, folder) or builtin:pneumonia "
        "(real chest X-rays shipped with vitbench).",
    )(fn)
    return fn


def sensitivity_option(fn):
    """--target-sensitivity for commands that choose a binary model's decision threshold on
    the val split (Youden's J without it)."""
    return click.option(
        "--target-sensitivity",
        type=click.FloatRange(0, 1, min_open=True),
        default=None,
        help="Binary task: the decision threshold is the highest reaching this sensitivity on "
        "the val split (screening, e.g. 0.95); default Youden's J.",
    )(fn)


def train_options(fn):
    fn = click.option("--seed", type=int, default=0, show_default=True)(fn)
    fn = click.option("--weight-decay", type=float, default=0.05, show_default=True)(fn)
    fn = click.option("--lr", type=float, default=5e-4, show_default=True)(fn)
    fn = click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)(fn)
    return fn


def load_splits(data, uncertain, frontal_only, splits=("train", "val", "test")):
    from harness.data import load_dataset

    return {
        s: load_dataset(data, split=s, uncertain=uncertain, frontal_only=frontal_only or None)
        for s in splits
    }


def say(quiet: bool):
    return (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))


def render_profile(prof) -> str:
    """The profile as a table: latency statistics, load and memory, then the environment."""
    from harness.tables import format_table

    s, m = prof.stats, prof.metrics
    rows = [
        ("iterations", s.n, ""),
        ("p50", s.p50, "ms"),
        ("p50 95% CI", f"{s.p50_ci[0]:.3f} - {s.p50_ci[1]:.3f}", "ms"),
        ("p90", s.p90, "ms"),
        ("p90 95% CI", f"{s.p90_ci[0]:.3f} - {s.p90_ci[1]:.3f}", "ms"),
        ("p99", s.p99, "ms"),
        ("mean", s.mean, "ms"),
        ("std", s.std, "ms"),
        ("CV", f"{s.cv:.1%}", ""),
        ("min / max", f"{s.min:.3f} / {s.max:.3f}", "ms"),
        (
            "drift (last vs first quarter)",
            f"{s.drift:+.1%}{' (significant)' if s.drift_significant else ''}",
            "",
        ),
        ("outliers (> 3 IQR)", s.outliers, ""),
    ]
    if s.rounds > 1:
        rows += [
            ("rounds", s.rounds, ""),
            ("between-round CV (of medians)", f"{s.between_round_cv:.1%}", ""),
            ("within-round CV", f"{s.within_round_cv:.1%}", ""),
            ("p90 interval's variance from rounds", f"{s.round_share:.0%}", ""),
        ]
    rows += [
        (k.removesuffix("_ms").removesuffix("_mb").replace("_", " "), v, prof.unit(k))
        for k, v in m.items()
    ]
    env = prof.environment
    for key in (
        "cpu",
        "cores_usable",
        "threads",
        "governor",
        "cpu_busy_before",
        "load_average_before",
        "load_average_after",
        "thermal_max_c",
        "thermal_state",
        "thermal_wait_s",
        "runtime_version",
        "memory_method",
        "os",
        "host",
    ):
        if key in env:
            val = env[key]
            rows.append(
                (
                    key.replace("_", " "),
                    ", ".join(f"{x:.2f}" for x in val) if isinstance(val, list) else val,
                    "",
                )
            )
    where = f"{prof.target}:{prof.device.name}"
    head = f"{where}  runtime {prof.runtime}  artifact {prof.artifact_sha256[:12]}"
    out = [head, format_table(rows, ["measure", "value", "unit"], align="lrl")]
    out += [f"warning: {w}" for w in prof.warnings]
    return "\n".join(out)


def pick_device(target, target_name: str, name: str | None):
    devices = target.devices()
    if not devices:
        raise UserError(f"target {target_name} has no reachable devices")
    if name is None:
        return devices[0]
    for d in devices:
        if name in (d.name, d.id):
            return d
    raise UserError(
        f"unknown device {name!r} on {target_name}; devices: {', '.join(d.name for d in devices)}"
    )
