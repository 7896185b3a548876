"""`vitbench train`, `vitbench compress` and `vitbench eval`: from a data set to a smaller
model, and what it cost."""

from __future__ import annotations

import click

from harness.cli.common import (
    data_options,
    emit_json,
    load_splits,
    model_options,
    model_overrides,
    say,
    sensitivity_option,
    train_options,
)
from harness.errors import UserError


def parse_count(text: str) -> int:
    """'37M', '500k', '1.5e6', '2000000' -> an integer parameter count."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale != 1 else t) * scale
    except ValueError:
        raise UserError(
            f"--target-params {text!r} is not a count; write e.g. 37M, 500k or 2000000"
        ) from None
    if value < 1:
        raise UserError(f"--target-params {text!r} must be positive")
    return int(value)


@click.command()
@click.argument("model")
@data_options
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Checkpoint folder to write.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@train_options
@model_options
@sensitivity_option
@click.option("--quiet", is_flag=True, help="No progress.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def train(
    model,
    data,
    uncertain,
    frontal_only,
    out_dir,
    epochs,
    batch_size,
    lr,
    weight_decay,
    seed,
    in_chans,
    num_classes,
    img_size,
    head_dim,
    target_sensitivity,
    quiet,
    as_json,
):
    """Train (fine-tune) MODEL on a data set: a preset, a checkpoint folder or timm weights.

    The best epoch on the validation split is kept and written to --out; a binary task's
    decision threshold is chosen on the validation split and kept in its config.json; the
    test metric is printed with its bootstrap 95% interval (and, binary, the operating point).
    """
    from pathlib import Path

    from harness.accuracy import model_accuracy
    from harness.compress import TrainSettings, fit, tensors
    from harness.data import check_images
    from harness.model import load_model, save_checkpoint

    splits = load_splits(data, uncertain, frontal_only)
    check_images(*splits.values())  # every split, before the first epoch
    tr = splits["train"]
    overrides = model_overrides(in_chans, num_classes, img_size, head_dim)
    from harness.model.builtin import TRAINED

    if not Path(model).is_dir() and model not in TRAINED:  # a shape or an import takes the
        # data set's head and task; a checkpoint (or a trained preset) keeps its own
        overrides["num_classes"] = overrides["num_classes"] or tr.num_classes
        overrides["task"] = tr.task
        overrides["labels"] = tr.classes
    net = load_model(model, **overrides)
    tr.check_fits(net.config)
    cfg = net.config
    settings = TrainSettings(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed
    )
    net = fit(
        net.train(),
        tensors(tr, cfg.img_size, cfg.in_chans),
        settings,
        val=tensors(splits["val"], cfg.img_size, cfg.in_chans),
        metric=tr.metric,
        task=cfg.task,
        progress=say(quiet),
    )
    save_checkpoint(net, out_dir)
    choice, net = threshold_on_val(net, out_dir, splits["val"], target_sensitivity)
    result = model_accuracy(net, splits["test"])
    if as_json:
        extra = {"threshold_choice": choice.to_dict()} if choice is not None else {}
        emit_json({"checkpoint": str(out_dir), "test": result.to_dict()} | extra)
        return
    click.echo(f"checkpoint  {out_dir}")
    if choice is not None:
        click.echo(f"threshold   {choice} on the val split (in config.json)")
    for r in result.results:
        click.echo(
            f"test {r.name:18} {r.value:.4f}  95% CI [{r.ci_low:.4f}, {r.ci_high:.4f}]  (n={r.n})"
        )
    for line in result.clinical_lines():
        click.echo(f"test {line}")


@click.command()
@click.option(
    "--teacher",
    required=True,
    help="Teacher: a vitbench checkpoint folder (or preset/timm weights).",
)
@data_options
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Student checkpoint folder.",
)
@click.option("--target-params", default=None, help="Parameter budget, e.g. 37M or 300k.")
@click.option(
    "--keep-ratio",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Keep this fraction of the teacher's parameters (e.g. 0.125).",
)
@click.option(
    "--target-size-mb",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="fp32 size budget in MB (4 bytes per parameter).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Prune-and-recover steps.",
)
@click.option("--epochs-per-step", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--final-epochs", type=click.IntRange(min=0), default=4, show_default=True)
@click.option(
    "--kd-weight", type=float, default=1.0, show_default=True, help="Logit KD weight (0: off)."
)
@click.option("--temperature", type=float, default=2.0, show_default=True)
@click.option(
    "--attn-weight",
    type=float,
    default=1.0,
    show_default=True,
    help="Attention-map alignment weight (0: off).",
)
@click.option("--no-distill", is_flag=True, help="Recover with the task loss only (no teacher).")
@click.option(
    "--neuron-importance",
    type=click.Choice(["taylor", "magnitude"]),
    default="taylor",
    show_default=True,
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Step checkpoints for resuming (default: OUT.work).",
)
@click.option(
    "--baseline",
    is_flag=True,
    help="Also train the student's final shape from scratch for the same epochs (task loss "
    "only; kept in WORK-DIR/baseline) and compare: warns when it matches or beats the teacher.",
)
@train_options
@sensitivity_option
@click.option("--quiet", is_flag=True, help="No progress.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compress(
    teacher,
    data,
    uncertain,
    frontal_only,
    out_dir,
    target_params,
    keep_ratio,
    target_size_mb,
    steps,
    epochs_per_step,
    final_epochs,
    kd_weight,
    temperature,
    attn_weight,
    no_distill,
    neuron_importance,
    work_dir,
    baseline,
    batch_size,
    lr,
    weight_decay,
    seed,
    target_sensitivity,
    quiet,
    as_json,
):
    """Compress a teacher: iterative head + FFN pruning with distillation, to a parameter budget.

    Ends with a report: parameters, size, GMACs, per-block heads and MLP widths kept, teacher
    vs student test metric with intervals, retention, and host latency of both; with
    --baseline, the student's shape trained from scratch beside them.
    """
    import warnings

    from harness.compress import (
        CompressSettings,
        DistillSettings,
        TrainSettings,
        WeakTeacherWarning,
        baseline_epochs,
        check_target,
        compression_report,
        operating_points,
        tensors,
        train_baseline,
    )
    from harness.compress import compress as run_compress
    from harness.data import check_images
    from harness.model import count_params, load_model, save_checkpoint

    if sum(x is not None for x in (target_params, keep_ratio, target_size_mb)) != 1:
        raise UserError("give exactly one of --target-params, --keep-ratio or --target-size-mb")
    net = load_model(teacher)
    n_teacher = count_params(net.config)
    if target_params is not None:
        budget = parse_count(target_params)
    elif keep_ratio is not None:
        budget = int(n_teacher * keep_ratio)
    else:
        budget = int(target_size_mb * 1e6 / 4)
    check_target(net, budget)
    splits = load_splits(data, uncertain, frontal_only)
    check_images(*splits.values())
    tr = splits["train"]
    tr.check_fits(net.config)
    cfg = net.config
    train_t, val_t, test_t = (
        tensors(splits[s], cfg.img_size, cfg.in_chans) for s in ("train", "val", "test")
    )
    settings = CompressSettings(
        target_params=budget,
        steps=steps,
        epochs_per_step=epochs_per_step,
        final_epochs=final_epochs,
        distill=DistillSettings(
            kd_weight=kd_weight, temperature=temperature, attn_weight=attn_weight
        ),
        use_teacher=not no_distill,
        neuron_importance=neuron_importance,
        train=TrainSettings(batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed),
    )
    work = work_dir or f"{out_dir}.work"
    student, history = run_compress(
        net, train_t, val_t, tr.metric, settings, work, progress=say(quiet)
    )
    save_checkpoint(student, out_dir)
    _, student = threshold_on_val(student, out_dir, splits["val"], target_sensitivity)
    scratch = None
    if baseline:
        scratch = train_baseline(
            student, net, train_t, val_t, tr.metric, settings, work, progress=say(quiet)
        )
        _, scratch = threshold_on_val(
            scratch, f"{work}/baseline", splits["val"], target_sensitivity
        )
    extra = () if tr.task == "multilabel" else ("accuracy",)
    report = compression_report(
        net,
        student,
        test_t,
        tr.metric,
        history=history,
        extra=extra,
        baseline=scratch,
        baseline_epochs=baseline_epochs(settings),
    )
    models = {"teacher": net, "student": student} | (
        {"baseline": scratch} if scratch is not None else {}
    )
    points = operating_points(models, splits, target_sensitivity)
    if as_json:
        points.pop("lines", None)
        emit_json({"student": str(out_dir), **report.to_dict()} | points)
        return
    click.echo(f"student     {out_dir}")
    click.echo("\n".join(line for line in report.lines() if not line.startswith("warning: ")))
    for line in points.get("lines", []):
        click.echo(line)
    for w in report.warnings:
        warnings.warn(w, WeakTeacherWarning, stacklevel=1)


@click.command(name="eval")
@click.argument("model")
@data_options
@click.option(
    "--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True
)
@click.option(
    "--target",
    "target_name",
    default=None,
    help="Run an exported artifact on this target (host, ...).",
)
@click.option(
    "--device", "device_name", default=None, help="Device of the target (default: its first)."
)
@click.option(
    "--allow-data-upload",
    is_flag=True,
    help="The data set's images may go to the target's service (AI Hub) in this run.",
)
@click.option(
    "--choose-threshold",
    is_flag=True,
    help="Binary task: choose the decision threshold on the val split (Youden's J) and write "
    "it into the checkpoint's config.json.",
)
@click.option(
    "--target-sensitivity",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="With --choose-threshold: the highest threshold reaching this sensitivity "
    "(screening, e.g. 0.95).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def eval_(
    model,
    data,
    uncertain,
    frontal_only,
    split,
    target_name,
    device_name,
    allow_data_upload,
    choose_threshold,
    target_sensitivity,
    as_json,
):
    """Accuracy of a checkpoint (PyTorch) or of an exported artifact on a target, on a data set.

    MODEL is a checkpoint folder or preset (run in PyTorch), or an artifact folder / model file
    with a manifest (run through --target's infer, on its device). A binary task is also
    scored at the model's decision threshold (sensitivity, specificity, PPV, NPV); a
    multi-class one per class, a multi-label one per label.
    """
    from pathlib import Path

    from harness.accuracy import model_accuracy
    from harness.artifact import MANIFEST
    from harness.operating_point import NO_THRESHOLD

    ds = load_splits(data, uncertain, frontal_only, splits=(split,))[split]
    p = Path(model)
    is_artifact = (
        p.name == MANIFEST
        or (p / MANIFEST).is_file()
        or (p.is_file() and (p.parent / MANIFEST).is_file())
    )
    if target_sensitivity is not None and not choose_threshold:
        raise UserError("--target-sensitivity goes with --choose-threshold")
    if choose_threshold and (is_artifact or not p.is_dir()):
        raise UserError(
            f"--choose-threshold writes into a checkpoint folder's config.json; {model} is not one"
        )
    choice = None
    if is_artifact:
        if target_name is None:
            raise UserError(
                f"{model} is an exported artifact; say where to run it with --target (e.g. "
                "--target host)"
            )
        result = artifact_result(p, target_name, device_name, ds, allow_data_upload, not as_json)
    else:
        if target_name is not None:
            raise UserError(
                f"{model} is a checkpoint, not an exported artifact; export it with `vitbench "
                "export` "
                "to run it on a target, or drop --target to evaluate it in PyTorch"
            )
        from harness.model import load_model

        net = load_model(model)
        if choose_threshold:
            choice, net = pick_threshold(net, p, data, uncertain, frontal_only, target_sensitivity)
        result = model_accuracy(net, ds, warn_no_threshold=not as_json)
    if as_json:
        # --json warns in the object, not on stderr
        extra = {"threshold_choice": choice.to_dict()} if choice is not None else {}
        if result.operating_point is not None and result.threshold_rule == "default":
            extra["warnings"] = [NO_THRESHOLD]
        emit_json(result.to_dict() | extra)
        return
    if choice is not None:
        click.echo(f"chose {choice} on the val split; written to {p / 'config.json'}")
    click.echo(f"model   {model} ({result.source})")
    click.echo(f"data    {result.data} [{ds.layout}, {split}, {result.n} images]")
    for r in result.results:
        click.echo(f"{r.name:18} {r.value:.4f}  95% CI [{r.ci_low:.4f}, {r.ci_high:.4f}]")
    for line in result.clinical_lines():
        click.echo(line)


def pick_threshold(net, folder, data, uncertain, frontal_only, target_sensitivity):
    """Choose the decision threshold on the val split, write it into ``folder``'s config.json;
    returns the choice and the model with the threshold in its config."""
    from harness import operating_point as op

    val = load_splits(data, uncertain, frontal_only, splits=("val",))["val"]
    if not op.is_binary(val.task, val.num_classes):
        raise UserError(
            f"--choose-threshold applies to binary tasks; {data} is a {val.task} task with "
            f"{val.num_classes} classes"
        )
    return threshold_on_val(net, folder, val, target_sensitivity)


def threshold_on_val(net, folder, val, target_sensitivity=None):
    """The decision threshold chosen on ``val`` (Youden's J, or the highest reaching
    ``target_sensitivity``) and written into ``folder``'s config.json: (choice, model with
    it); (None, model) for a task that is not binary."""
    from harness import operating_point as op
    from harness.data import check_images
    from harness.inference import predict, tensors
    from harness.model.checkpoint import write_threshold

    if not op.is_binary(val.task, val.num_classes):
        return None, net
    val.check_fits(net.config)
    check_images(val)
    scores = predict(net, tensors(val, net.config.img_size, net.config.in_chans))
    choice = op.choose_threshold(val.labels, scores, target_sensitivity=target_sensitivity)
    write_threshold(folder, choice.threshold, choice.rule)
    net.config = net.config.replace(decision_threshold=choice.threshold, threshold_rule=choice.rule)
    return choice, net


def artifact_result(p, target_name, device_name, ds, allow_data_upload, warn):
    """An exported artifact's accuracy through ``target_name``'s infer."""
    from harness import plugins
    from harness.accuracy import artifact_accuracy
    from harness.artifact import Artifact

    artifact = Artifact.load(p).verify()
    target = plugins.target(target_name)
    if not target.accepts(artifact):
        raise UserError(f"target {target_name!r} cannot run a {artifact.format} artifact")
    devices = target.devices()
    chosen = [d for d in devices if device_name in (None, d.name, d.id)]
    if not chosen:
        raise UserError(
            f"target {target_name!r} has no device {device_name!r}; "
            f"available: {', '.join(d.name for d in devices) or 'none'}"
        )
    return artifact_accuracy(
        artifact,
        target,
        chosen[0],
        ds,
        allow_data_upload=allow_data_upload,
        warn_no_threshold=warn,
    )
