"""MODEL_CARD.md of the built-in X-ray pair, rendered from card.json (harness/model/builtin/
build.py writes both)."""

from __future__ import annotations

from typing import Any

NAMES = {"auc": "AUC", "accuracy": "accuracy", "sensitivity": "sensitivity",
         "specificity": "specificity", "ppv": "PPV", "npv": "NPV"}  # fmt: skip


def _row(name: str, numbers: dict[str, Any]) -> str:
    cells = [
        f"{numbers[m]['value']:.3f} [{numbers[m]['ci_low']:.3f}, {numbers[m]['ci_high']:.3f}]"
        if m in numbers
        else "–"
        for m in NAMES
    ]
    return f"| {name} | " + " | ".join(cells) + " |"


def render_card(card: dict[str, Any]) -> str:
    t, s = card["models"]["xray-teacher"], card["models"]["xray-student"]
    lines = [
        "# Model card: the built-in X-ray pair (`xray-teacher`, `xray-student`)",
        "",
        "Two Vision Transformers that vitbench trained and compressed itself, seeded, on the",
        "chest X-rays it ships (`builtin:pneumonia`: PneumoniaMNIST, class-balanced, 28x28 grey,",
        "normal vs pneumonia; CC BY 4.0, MedMNIST v2, Yang et al. 2023, images from Kermany et",
        "al. 2018; see `harness/data/builtin/README.md`). They exist so that vitbench's own",
        "default job measures a real compressed medical model: latency, on-target accuracy and",
        "what compression cost. They are **not** for clinical use: 28x28 images, one public",
        "pediatric data set, no external validation.",
        "",
        f"Data: `{card['data']['name']}`, sha256 `{card['data']['sha256']}`.",
        "",
        "## How they were made",
        "",
        "```sh",
        *(cmd.format(out="OUT") for cmd in card["commands"].values()),
        "```",
        "",
        "`vitbench train` keeps the best validation epoch; both commands choose the decision",
        "threshold on the validation split (Youden's J) and keep it in `config.json`.",
        "`python -m harness.model.builtin.build` (or `nox -s builtin-models`) runs these",
        "commands again and checks every metric below against its interval.",
        "",
        "## The models",
        "",
        "| model | parameters | fp32 MB | threshold | weights sha256 | build s |",
        "|---|---:|---:|---|---|---:|",
    ]
    for name, m in card["models"].items():
        lines.append(
            f"| `{name}` | {m['parameters']:,} | {m['size_mb_fp32']} | "
            f"{m['decision_threshold']:.4f} ({m['threshold_rule']}) | "
            f"`{m['weights_sha256'][:16]}` | {m['build_seconds']} |"
        )
    lines += [
        "",
        f"The student has 1/{card['parameter_ratio']:.1f} of the teacher's parameters.",
        "",
        "## Metrics (95% bootstrap intervals; operating point at the model's threshold)",
        "",
        "| model, split | " + " | ".join(NAMES.values()) + " |",
        "|---|" + "---:|" * len(NAMES),
    ]
    for name, m in (("xray-teacher", t), ("xray-student", s)):
        for split in ("val", "test"):
            lines.append(_row(f"`{name}` {split}", m["metrics"][split]))
    kept = ", ".join(f"{k} {v:.1%}" for k, v in card["retention"].items())
    lines += ["", f"Student / teacher on the test split: {kept}.", ""]
    return "\n".join(lines)
