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


# -- targets and profile (measurement engine, host target) -------------------------------------


# -- run, plan, runs, report, gate, compare (plans, store, reports) ----------------------------


# -- train, compress, eval (compression and accuracy) ------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
