"""Build the built-in X-ray pair with vitbench's own commands, and check it against its card.

    python -m harness.model.builtin.build            # rebuild in a temporary folder, compare
                                                     # with card.json (nox -s builtin-models)
    python -m harness.model.builtin.build --write    # rebuild and ship it: weights, card.json,
                                                     # MODEL_CARD.md beside this file

The commands are the card's: `vitbench train` of the ``xray-small`` shape on
``builtin:pneumonia`` (seeded; the decision threshold chosen on the val split), `vitbench
compress` of that teacher to 1/8 of its parameters (head + FFN pruning with logit and
attention distillation, seeded), then `vitbench eval` of both on the val and test splits.
The check passes when every rebuilt metric lies inside the card's 95% interval for it and the
parameter counts are the card's; it prints one line per metric and exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.model.builtin import CARD_JSON, HERE, TRAINED

DATA = "builtin:pneumonia"
METRICS = ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv")
# {out} is the build folder
COMMANDS = {
    "xray-teacher": (
        f"vitbench train xray-small --data {DATA} --out {{out}}/xray-teacher --epochs 12 "
        "--batch-size 64 --lr 1e-3 --weight-decay 0.05 --seed 0 --json"
    ),
    "xray-student": (
        f"vitbench compress --teacher {{out}}/xray-teacher --data {DATA} "
        "--out {out}/xray-student --keep-ratio 0.125 --steps 3 --epochs-per-step 2 "
        "--final-epochs 4 --batch-size 64 --lr 1e-3 --seed 0 --json"
    ),
}


def _vitbench(command: str, out: Path) -> dict:
    args = command.format(out=out).split()[1:]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"{command.format(out=out)} failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout)


def _numbers(result: dict) -> dict:
    """metric -> {value, ci_low, ci_high} from `vitbench eval --json`."""
    rows = list(result["metrics"]) + list(result.get("operating_point", {}).get("metrics", []))
    return {
        r["name"]: {k: r[k] for k in ("value", "ci_low", "ci_high")}
        for r in rows
        if r["name"] in METRICS
    }


def build(out: Path) -> dict:
    """Run the card's commands into ``out``; the card's contents."""
    from harness.data.builtin import BUILTIN
    from harness.model import count_params, load_model

    card: dict = {
        "data": {"name": DATA, "sha256": BUILTIN["pneumonia"].sha256},
        "commands": {},
        "models": {},
    }
    for name, command in COMMANDS.items():
        t0 = time.perf_counter()
        _vitbench(command, out)
        seconds = time.perf_counter() - t0
        folder = out / name
        net = load_model(folder)
        evals = {
            split: _numbers(
                _vitbench(f"vitbench eval {folder} --data {DATA} --split {split} --json", out)
            )
            for split in ("val", "test")
        }
        card["commands"][name] = command
        card["models"][name] = {
            "parameters": count_params(net.config),
            "size_mb_fp32": round(count_params(net.config) * 4 / 1e6, 2),
            "decision_threshold": net.config.decision_threshold,
            "threshold_rule": net.config.threshold_rule,
            "weights_sha256": hashlib.sha256(
                (folder / "model.safetensors").read_bytes()
            ).hexdigest(),
            "build_seconds": round(seconds, 1),
            "metrics": evals,
        }
    t, s = card["models"]["xray-teacher"], card["models"]["xray-student"]
    card["retention"] = {
        m: s["metrics"]["test"][m]["value"] / t["metrics"]["test"][m]["value"]
        for m in ("auc", "sensitivity", "specificity")
        if t["metrics"]["test"][m]["value"] > 0
    }
    card["parameter_ratio"] = t["parameters"] / s["parameters"]
    return card


def check(card: dict, shipped: dict) -> list[str]:
    """What differs between a rebuilt card and the shipped one (empty: it matches)."""
    problems = []
    for name in TRAINED:
        new, old = card["models"][name], shipped["models"][name]
        if new["parameters"] != old["parameters"]:
            problems.append(f"{name}: {new['parameters']:,} parameters, card {old['parameters']:,}")
        for split in ("val", "test"):
            for metric, ref in old["metrics"][split].items():
                got = new["metrics"][split][metric]["value"]
                inside = ref["ci_low"] <= got <= ref["ci_high"]
                line = (
                    f"{name} {split} {metric}: rebuilt {got:.4f}, card {ref['value']:.4f} "
                    f"[{ref['ci_low']:.4f}, {ref['ci_high']:.4f}]"
                )
                print(("ok       " if inside else "OUTSIDE  ") + line)
                if not inside:
                    problems.append(line)
    return problems


def write(card: dict, out: Path) -> None:
    for name in TRAINED:
        dest = HERE / name
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        for f in ("config.json", "model.safetensors"):
            shutil.copyfile(out / name / f, dest / f)  # mode 644 for the package
    CARD_JSON.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    from harness.model.builtin.card import render_card

    (HERE / "MODEL_CARD.md").write_text(render_card(card))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="ship the rebuilt pair and its card")
    ap.add_argument("--out", default=None, help="build folder (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vitbench-builtin-") as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        card = build(out)
        print(f"built the pair in {time.perf_counter() - t0:.0f} s")
        if args.write:
            write(card, out)
            print(f"wrote {HERE}/xray-teacher, xray-student, card.json, MODEL_CARD.md")
            return
        if not CARD_JSON.is_file():
            raise SystemExit(f"no {CARD_JSON}: build it once with --write")
        problems = check(card, json.loads(CARD_JSON.read_text()))
    if problems:
        print(f"{len(problems)} rebuilt numbers differ from the card", file=sys.stderr)
        sys.exit(1)
    print("the rebuilt pair matches its card")


if __name__ == "__main__":
    main()
