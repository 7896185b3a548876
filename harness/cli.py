"""The `vitbench` command line: parses, calls into harness/targets/reports, prints.

Errors a user can cause end with one line on stderr and a non-zero exit (2 unless a command
documents another); programming errors keep their traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from harness import __version__
from harness.errors import UserError


class VitbenchGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"vitbench: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def model_options(fn):
    """Options that shape a preset or an imported checkpoint (ignored for nothing: a vitbench
    checkpoint folder refuses them)."""
    fn = click.option("--head-dim", type=click.IntRange(min=1), default=None,
                      help="Head dimension when importing timm weights (default 64).")(fn)
    fn = click.option("--img-size", type=click.IntRange(min=1), default=None,
                      help="Input resolution (presets only).")(fn)
    fn = click.option("--num-classes", type=click.IntRange(min=1), default=None,
                      help="Output classes (presets; imports get a fresh head).")(fn)
    fn = click.option("--in-chans", type=click.IntRange(min=1), default=None,
                      help="Input channels: 1 for X-ray, 3 for colour.")(fn)
    return fn


def model_overrides(in_chans, num_classes, img_size, head_dim) -> dict[str, Any]:
    out = {"in_chans": in_chans, "num_classes": num_classes, "img_size": img_size}
    if head_dim is not None:
        out["head_dim"] = head_dim
    return out


@click.group(cls=VitbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="vitbench")
def main() -> None:
    """Compress, export and benchmark a lightweight medical ViT across devices."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """The built-in presets: parameters, fp32 size and GMACs at their input size."""
    from harness.model import describe, preset_config, preset_names
    from harness.model.presets import DESCRIPTIONS
    from harness.tables import format_table

    rows = [describe(preset_config(n)) | {"description": DESCRIPTIONS[n]} for n in preset_names()]
    if as_json:
        emit_json(rows)
        return
    click.echo(format_table(
        [(r["name"], r["params_m"], r["size_mb_fp32"], r["gmacs"], f"{r['img_size']}x{r['img_size']}",
          r["depth"], r["embed_dim"], r["description"]) for r in rows],
        ["preset", "params (M)", "fp32 (MB)", "GMACs", "input", "depth", "width", "what"],
    ))


@main.command()
@click.argument("model")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(model: str, in_chans, num_classes, img_size, head_dim, as_json: bool) -> None:
    """Describe a preset, a vitbench checkpoint folder or a timm/DeiT weights file."""
    from harness.model import describe, load_config
    from harness.tables import format_table

    cfg = load_config(model, **model_overrides(in_chans, num_classes, img_size, head_dim))
    d = describe(cfg)
    if as_json:
        emit_json(d)
        return
    click.echo(f"model       {model}")
    click.echo(f"params      {d['params_m']} M ({d['params']:,})")
    click.echo(f"fp32 size   {d['size_mb_fp32']} MB")
    click.echo(f"GMACs       {d['gmacs']} at {d['img_size']}x{d['img_size']}x{d['in_chans']}")
    click.echo(f"shape       width {d['embed_dim']}, head dim {d['head_dim']}, depth {d['depth']}, "
               f"patch {d['patch_size']}, {d['num_classes']} classes ({d['task']})")
    click.echo("")
    click.echo(format_table(
        [(i, h, h * cfg.head_dim, m) for i, (h, m) in enumerate(zip(cfg.num_heads, cfg.mlp_dims, strict=False))],
        ["block", "heads", "attn width", "MLP width"],
    ))


# -- export and exporters (exporter registry) -------------------------------------------------

def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE pairs; values are JSON when they parse as JSON (numbers, true, lists), else text."""
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


@main.command()
@click.option("--model", "model_spec", required=True, help="Preset name, checkpoint folder or timm weights file.")
@click.option("--format", "fmt", required=True, help="onnx, executorch, coreml, pt2 or a plugin's name.")
@click.option("--delegate", default=None, help="executorch: xnnpack (default), coreml, qnn, mediatek, portable.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Default: the format's own (fp32; coreml fp16).")
@click.option("--calibration", "calibration", default=None,
              help="int8: a folder of PNG/JPEG images or a MedMNIST .npz (default: seeded synthetic images).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--dynamic-batch", is_flag=True, help="onnx, pt2: a dynamic batch axis.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Exporter option, repeatable: chipset=SM8650 (qnn), platform=mt6989 (mediatek), "
                   "minimum_deployment_target=macOS14 (coreml), opset=17 (onnx).")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Also copy the artifact folder here.")
@click.option("--cache", "cache", type=click.Path(file_okay=False), default=None,
              help="Cache folder (default $VITBENCH_CACHE or ~/.cache/vitbench).")
@click.option("--no-cache", is_flag=True, help="Export again even when the cache holds this artifact.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def export(model_spec, fmt, delegate, precision, calibration, batch_size, dynamic_batch, options, out,
           cache, no_cache, quiet, in_chans, num_classes, img_size, head_dim, as_json) -> None:
    """Export a model to an artifact (model file + manifest.json + reference.npz) and check
    its parity with PyTorch where this machine can run it."""
    from harness import plugins
    from harness.artifacts import ExportSpec, export_artifact, resolve_spec

    opts = _parse_options(options)
    if dynamic_batch:
        opts["dynamic_batch"] = True
    spec = ExportSpec(format=fmt, delegate=delegate, precision=precision, batch_size=batch_size, options=opts)
    # unknown format, delegate or precision, missing SDK: fails here, before the model loads
    spec = resolve_spec(plugins.exporter(fmt), spec)
    from harness.model import load_model  # torch: only once the request is known to be good

    model = load_model(model_spec, **model_overrides(in_chans, num_classes, img_size, head_dim))
    say = (lambda _m: None) if (quiet or as_json) else (lambda m: click.echo(m, err=True))
    artifact = export_artifact(model, spec, cache=cache, out=out, no_cache=no_cache,
                               calibration=calibration, progress=say)
    if as_json:
        emit_json({"path": str(artifact.path), **artifact.manifest})
        return
    m = artifact.manifest
    parity = m.get("parity", {})
    click.echo(f"artifact    {artifact.path}")
    click.echo(f"export      {spec.label}  ({m['size'] / 1e6:.1f} MB, sha256 {m['sha256'][:16]}...)")
    click.echo(f"model       {m['model']['name']}  (sha256 {m['model']['sha256'][:16]}...)")
    click.echo("io          " + ", ".join(f"{t['name']} {t['shape']}" for t in m["inputs"] + m["outputs"]))
    low = m.get("lowering", {})
    if "backends" in low:
        for backend, b in low["backends"].items():
            click.echo(f"lowering    {backend}: {b['delegated_ops']} ops in {b['subgraphs']} subgraphs")
        share = low.get("matmul_flops_delegated_share")
        click.echo(f"            {low['non_delegated_ops']} ops outside delegates; linear/matmul FLOPs delegated: "
                   + (f"{share:.1%}" if share is not None else "n/a"))
    elif "operators" in low:
        top = ", ".join(f"{k} {v}" for k, v in list(low["operators"].items())[:8])
        click.echo(f"lowering    {low.get('nodes', '?')} ops: {top}")
    if parity.get("status") == "pending":
        click.echo(f"parity      pending on {parity['where']}: {parity['reason']}")
    elif parity:
        click.echo(f"parity      {parity['status']} on {parity['where']}: max abs {parity['max_abs']:.3g}, "
                   f"cosine {parity['cosine']:.6f}, top-1 {parity['top1']:.0%} ({parity['n']} seeded inputs)")
    click.echo(f"manifest    {artifact.folder / 'manifest.json'}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def exporters(as_json: bool) -> None:
    """Exporters available here and, for the others, why not (missing SDK, wrong OS)."""
    from harness import plugins
    from harness.tables import format_table

    rows = []
    for info in plugins.describe("exporter"):
        row = {"name": info.name, "source": info.source, "ref": info.ref, "available": info.available,
               "reason": info.reason}
        if info.available:
            plugin = plugins.exporter(info.name)
            delegates = getattr(plugin, "delegates", None)
            if callable(delegates):
                row["delegates"] = {d: {"available": not why, "reason": why} for d, why in delegates().items()}
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



# -- targets and profile (measurement engine, host target) -------------------------------------


# -- run, plan, runs, report, gate, compare (plans, store, reports) ----------------------------


# -- train, compress, eval (compression and accuracy) ------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
