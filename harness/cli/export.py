"""`vitbench export` and `vitbench exporters`: the exporter registry from the command line."""

from __future__ import annotations

import click

from harness.cli.common import emit_json, model_options, model_overrides, parse_options


@click.command()
@click.option(
    "--model",
    "model_spec",
    required=True,
    help="Preset name, checkpoint folder or timm weights file.",
)
@click.option(
    "--format", "fmt", required=True, help="onnx, executorch, coreml, pt2 or a plugin's name."
)
@click.option(
    "--delegate",
    default=None,
    help="executorch: xnnpack (default), coreml, qnn, mediatek, portable.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default=None,
    help="Default: the format's own (fp32; coreml fp16).",
)
@click.option(
    "--calibration",
    "calibration",
    default=None,
    help="int8: a folder of PNG/JPEG images or a MedMNIST .npz (default: seeded synthetic images).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--dynamic-batch", is_flag=True, help="onnx, pt2: a dynamic batch axis.")
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Exporter option, repeatable: chipset=SM8650 (qnn), platform=mt6989 (mediatek), "
    "minimum_deployment_target=macOS14 (coreml), opset=17 (onnx).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    default=None,
    help="Also copy the artifact folder here.",
)
@click.option(
    "--cache",
    "cache",
    type=click.Path(file_okay=False),
    default=None,
    help="Cache folder (default $VITBENCH_CACHE or ~/.cache/vitbench).",
)
@click.option(
    "--no-cache", is_flag=True, help="Export again even when the cache holds this artifact."
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def export(
    model_spec,
    fmt,
    delegate,
    precision,
    calibration,
    batch_size,
    dynamic_batch,
    options,
    out,
    cache,
    no_cache,
    quiet,
    in_chans,
    num_classes,
    img_size,
    head_dim,
    as_json,
) -> None:
    """Export a model to an artifact (model file + manifest.json + reference.npz) and check
    its parity with PyTorch where this machine can run it."""
    from harness import plugins
    from harness.artifact import ExportSpec
    from harness.export import export_artifact, resolve_spec

    opts = parse_options(options)
    if dynamic_batch:
        opts["dynamic_batch"] = True
    spec = ExportSpec(
        format=fmt, delegate=delegate, precision=precision, batch_size=batch_size, options=opts
    )
    # unknown format, delegate or precision, missing SDK: fails here, before the model loads
    spec = resolve_spec(plugins.exporter(fmt), spec)
    from harness.model import load_model  # torch: only once the request is known to be good

    model = load_model(model_spec, **model_overrides(in_chans, num_classes, img_size, head_dim))
    say = (lambda _m: None) if (quiet or as_json) else (lambda m: click.echo(m, err=True))
    artifact = export_artifact(
        model, spec, cache=cache, out=out, no_cache=no_cache, calibration=calibration, progress=say
    )
    if as_json:
        emit_json({"path": str(artifact.path), **artifact.manifest})
        return
    m = artifact.manifest
    parity = m.get("parity", {})
    click.echo(f"artifact    {artifact.path}")
    click.echo(
        f"export      {spec.label}  ({m['size'] / 1e6:.1f} MB, sha256 {m['sha256'][:16]}...)"
    )
    click.echo(f"model       {m['model']['name']}  (sha256 {m['model']['sha256'][:16]}...)")
    click.echo(
        "io          " + ", ".join(f"{t['name']} {t['shape']}" for t in m["inputs"] + m["outputs"])
    )
    low = m.get("lowering", {})
    if "backends" in low:
        for backend, b in low["backends"].items():
            click.echo(
                f"lowering    {backend}: {b['delegated_ops']} ops in {b['subgraphs']} subgraphs"
            )
        share = low.get("matmul_flops_delegated_share")
        click.echo(
            f"            {low['non_delegated_ops']} ops outside delegates; linear/matmul FLOPs "
            "delegated: " + (f"{share:.1%}" if share is not None else "n/a")
        )
    elif "operators" in low:
        top = ", ".join(f"{k} {v}" for k, v in list(low["operators"].items())[:8])
        click.echo(f"lowering    {low.get('nodes', '?')} ops: {top}")
    if parity.get("status") == "pending":
        click.echo(f"parity      pending on {parity['where']}: {parity['reason']}")
    elif parity:
        click.echo(
            f"parity      {parity['status']} on {parity['where']}: max abs "
            f"{parity['max_abs']:.3g}, "
            f"cosine {parity['cosine']:.6f}, top-1 {parity['top1']:.0%} ({parity['n']} seeded "
            "inputs)"
        )
    click.echo(f"manifest    {artifact.folder / 'manifest.json'}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def exporters(as_json: bool) -> None:
    """Exporters available here and, for the others, why not (missing SDK, wrong OS)."""
    from harness import plugins
    from harness.tables import format_table

    rows = []
    for info in plugins.describe("exporter"):
        row = {
            "name": info.name,
            "source": info.source,
            "ref": info.ref,
            "available": info.available,
            "reason": info.reason,
        }
        if info.available:
            delegates = plugins.exporter(info.name).delegates()
            if delegates:
                row["delegates"] = {
                    d: {"available": not why, "reason": why} for d, why in delegates.items()
                }
        rows.append(row)
    if as_json:
        emit_json(rows)
        return
    table = []
    for r in rows:
        table.append((r["name"], "yes" if r["available"] else "no", r["source"], r["reason"]))
        for d, v in r.get("delegates", {}).items():
            table.append((f"  {r['name']}/{d}", "yes" if v["available"] else "no", "", v["reason"]))
    click.echo(format_table(table, ["exporter", "available", "from", "why not"]))
