"""`vitbench models` and `vitbench info`: the presets and any model's shape and size."""

from __future__ import annotations

import click

from harness.cli.common import emit_json, model_options, model_overrides


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """The built-in presets (shapes with seeded weights, and the trained X-ray pair):
    parameters, fp32 size and GMACs at their input size."""
    from harness.model import describe, load_config, preset_config, preset_names
    from harness.model.builtin import TRAINED, trained_path
    from harness.model.presets import DESCRIPTIONS
    from harness.tables import format_table

    rows = [describe(preset_config(n)) | {"description": DESCRIPTIONS[n]} for n in preset_names()]
    rows += [
        describe(load_config(n)) | {"name": n, "description": why}
        for n, why in TRAINED.items()
        if trained_path(n).is_dir()
    ]
    if as_json:
        emit_json(rows)
        return
    click.echo(
        format_table(
            [
                (
                    r["name"],
                    r["params_m"],
                    r["size_mb_fp32"],
                    r["gmacs"],
                    f"{r['img_size']}x{r['img_size']}",
                    r["depth"],
                    r["embed_dim"],
                    r["description"],
                )
                for r in rows
            ],
            ["preset", "params (M)", "fp32 (MB)", "GMACs", "input", "depth", "width", "what"],
        )
    )


@click.command()
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
    click.echo(
        f"shape       width {d['embed_dim']}, head dim {d['head_dim']}, depth {d['depth']}, "
        f"patch {d['patch_size']}, {d['num_classes']} classes ({d['task']})"
    )
    click.echo("")
    click.echo(
        format_table(
            [
                (i, h, h * cfg.head_dim, m)
                for i, (h, m) in enumerate(zip(cfg.num_heads, cfg.mlp_dims, strict=False))
            ],
            ["block", "heads", "attn width", "MLP width"],
        )
    )
