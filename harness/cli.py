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

@main.command()
@click.option("--target", "only", default=None, help="Only this target.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def targets(only: str | None, as_json: bool) -> None:
    """Targets and the devices each can reach now."""
    from harness import plugins
    from harness.tables import format_table

    infos = [i for i in plugins.describe("target") if only in (None, i.name)]
    if only and not infos:
        raise UserError(f"unknown target {only!r}; available: {', '.join(plugins.names('target'))}")
    rows = []
    for info in infos:
        devices, reason = [], info.reason
        if info.available:
            try:
                devices = [d.to_dict() for d in plugins.target(info.name).devices()]
            except UserError as exc:
                reason = str(exc)
        rows.append({"target": info.name, "source": info.source, "available": not reason,
                     "reason": reason, "devices": devices})
    if as_json:
        emit_json(rows)
        return
    table = []
    for r in rows:
        if not r["devices"]:
            table.append((r["target"], "-", "-", "-", r["reason"] or "no devices reachable"))
        for d in r["devices"]:
            note = (d.get("attributes") or {}).get("reason", "")  # a configured host not reachable now
            table.append((r["target"], d["name"], d["chipset"] or "-", d["os"] or "-", note))
    click.echo(format_table(table, ["target", "device", "chipset", "os", "note"]))


def _profile_settings(quick, iterations, min_seconds, warmup, threads, runtime, timeout, batch_size):
    from targets.base import ProfileSettings

    base = ProfileSettings.quick() if quick else ProfileSettings()
    loop = {k: v for k, v in (("min_iterations", iterations), ("min_seconds", min_seconds),
                              ("warmup_iterations", warmup)) if v is not None}
    if iterations is not None and iterations > base.loop.max_iterations:
        loop["max_iterations"] = iterations
    try:
        settings = base.with_loop(**loop)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    from dataclasses import replace

    return replace(settings, runtime=runtime, threads=threads, batch_size=batch_size,
                   timeout_s=timeout if timeout is not None else settings.timeout_s)


def render_profile(prof) -> str:
    """The profile as a table: latency statistics, load and memory, then the environment."""
    from harness.tables import format_table

    s, m = prof.stats, prof.metrics
    rows = [
        ("iterations", s.n, ""), ("p50", s.p50, "ms"),
        ("p50 95% CI", f"{s.p50_ci[0]:.3f} - {s.p50_ci[1]:.3f}", "ms"),
        ("p90", s.p90, "ms"), ("p90 95% CI", f"{s.p90_ci[0]:.3f} - {s.p90_ci[1]:.3f}", "ms"),
        ("p99", s.p99, "ms"), ("mean", s.mean, "ms"), ("std", s.std, "ms"), ("CV", f"{s.cv:.1%}", ""),
        ("min / max", f"{s.min:.3f} / {s.max:.3f}", "ms"),
        ("drift (last vs first quarter)", f"{s.drift:+.1%}{' (significant)' if s.drift_significant else ''}", ""),
        ("outliers (> 3 IQR)", s.outliers, ""),
    ]
    rows += [(k.removesuffix("_ms").removesuffix("_mb").replace("_", " "), v, prof.unit(k)) for k, v in m.items()]
    env = prof.environment
    for key in ("cpu", "cores_usable", "threads", "governor", "cpu_busy_before", "load_average_before", "load_average_after",
                "thermal_max_c", "thermal_state", "thermal_wait_s", "runtime_version", "memory_method", "os", "host"):
        if key in env:
            val = env[key]
            rows.append((key.replace("_", " "), ", ".join(f"{x:.2f}" for x in val) if isinstance(val, list) else val, ""))
    head = f"{prof.target}:{prof.device.name}  runtime {prof.runtime}  artifact {prof.artifact_sha256[:12]}"
    out = [head, format_table(rows, ["measure", "value", "unit"], align="lrl")]
    out += [f"warning: {w}" for w in prof.warnings]
    return "\n".join(out)


@main.command()
@click.argument("artifact", type=click.Path())
@click.option("--target", "target_name", default="host", show_default=True, help="Where to run it.")
@click.option("--device", default=None, help="Device name (default: the target's first).")
@click.option("--runtime", default=None, help="host: ort | executorch | torch (default: by format).")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="At least this many timed runs.")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=None, help="And at least this long.")
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="Warm-up iterations.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Runtime threads (default: usable cores).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=1), default=None, help="Seconds before the worker is killed.")
@click.option("--compute-unit", default=None,
              help="apple, Core ML: ALL | CPU_AND_NE | CPU_AND_GPU | CPU_ONLY (default ALL).")
@click.option("--quick", is_flag=True, help="CI settings: 20 iterations and 1 s minimum.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (raw samples included).")
def profile(artifact, target_name, device, runtime, iterations, min_seconds, warmup, threads, batch_size,
            timeout, compute_unit, quick, as_json) -> None:
    """Measure ARTIFACT: latency statistics, load times, first inference, peak memory."""
    from harness import plugins
    from harness.artifacts import Artifact

    art = Artifact.load(artifact)
    target = plugins.target(target_name)
    if not target.accepts(art):
        capable = [n for n in plugins.names("target") if n != target_name and _accepts(n, art)]
        why = target.refusal(art) if hasattr(target, "refusal") else f"{target_name} cannot run {art.format}"
        raise UserError(f"{why}" + (f" (targets that take it: {', '.join(capable)})" if capable else ""))
    dev = _pick_device(target, target_name, device)
    settings = _profile_settings(quick, iterations, min_seconds, warmup, threads, runtime, timeout, batch_size)
    if compute_unit:
        from dataclasses import replace

        settings = replace(settings, compute_unit=compute_unit)
    prof = target.profile(art, dev, settings)
    if as_json:
        emit_json(prof.to_dict())
    else:
        click.echo(render_profile(prof))


def _accepts(name: str, art) -> bool:
    from harness import plugins

    try:
        return bool(plugins.target(name).accepts(art))
    except Exception:  # noqa: BLE001 - a target that cannot even load does not take it
        return False


def _pick_device(target, target_name: str, name: str | None):
    devices = target.devices()
    if not devices:
        raise UserError(f"target {target_name} has no reachable devices")
    if name is None:
        return devices[0]
    for d in devices:
        if name in (d.name, d.id):
            return d
    raise UserError(f"unknown device {name!r} on {target_name}; devices: {', '.join(d.name for d in devices)}")



@main.group()
def aihub() -> None:
    """Qualcomm AI Hub: its devices, and profiling on real Snapdragon hardware (needs an AI
    Hub token: `qai-hub configure --api_token TOKEN` or QAI_HUB_API_TOKEN)."""


@aihub.command("devices")
@click.option("--device", "selectors", multiple=True,
              help="Only these: a name, an attribute such as chipset:qualcomm-snapdragon-8gen3, "
                   "optionally @OS or @[low,high).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def aihub_devices(selectors: tuple[str, ...], as_json: bool) -> None:
    """The devices AI Hub offers now, with chipset, OS and the runtimes they take."""
    from harness.tables import format_table
    from targets.aihub import AIHubTarget
    from targets.aihub.devices import device_row

    hub = AIHubTarget()
    rows = [device_row(d) for d in (hub.select(selectors) if selectors else hub.devices())]
    if as_json:
        emit_json(rows)
        return
    click.echo(format_table([(r["name"], r["os"], r["chipset"], ", ".join(r["runtimes"])) for r in rows],
                            ["device", "os", "chipset", "runtimes"]))


@aihub.command("profile")
@click.argument("artifact", type=click.Path())
@click.option("--device", "selectors", multiple=True, required=True,
              help="Repeat for several devices: a name, chipset:NAME, optionally @OS or @[low,high).")
@click.option("--runtime", default="tflite", show_default=True,
              help="tflite, qnn_dlc, qnn_context_binary, onnx or precompiled_qnn_onnx.")
@click.option("--compute-unit", default="npu", show_default=True, help="npu, gpu, cpu or all.")
@click.option("--iterations", type=click.IntRange(min=1), default=100, show_default=True,
              help="Profiled inferences per device.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Seconds to wait for each job; a job past it keeps running and a re-run picks it up.")
@click.option("--parity", is_flag=True, help="Also run the seeded reference inputs and compare with PyTorch.")
@click.option("--state", type=click.Path(), default=None,
              help="Job journal for resuming (default: ~/.cache/vitbench/aihub/journal.json).")
@click.option("--poll-interval", type=float, default=10.0, hidden=True)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def aihub_profile(artifact: str, selectors: tuple[str, ...], runtime: str, compute_unit: str, iterations: int,
                  timeout_s: float, parity: bool, state: str | None, poll_interval: float, quiet: bool,
                  as_json: bool) -> None:
    """Compile ARTIFACT (ONNX or pt2) for each device and profile it there, all at once."""
    from harness.artifacts import Artifact
    from harness.tables import format_table
    from targets.aihub import AIHubTarget
    from targets.base import ProfileSettings, TargetError

    def progress(who: str, message: str) -> None:
        if not quiet:
            click.echo(f"[aihub] {who}: {message}", err=True)

    hub = AIHubTarget(journal=state, poll_interval_s=poll_interval, progress=progress)
    art = Artifact.load(artifact)
    hub.check_artifact(art)
    settings = ProfileSettings(runtime=runtime, compute_unit=compute_unit, timeout_s=timeout_s).with_loop(
        min_iterations=iterations)
    devices = hub.select(selectors)
    results = hub.profile_many(art, devices, settings, parity=parity)
    failed = [r for r in results if isinstance(r, TargetError)]
    if as_json:
        emit_json([{"device": d.name, "status": "failed", "kind": r.kind, "error": str(r)}
                   if isinstance(r, TargetError) else {"device": d.name, "status": "done", "profile": r.to_dict()}
                   for d, r in zip(devices, results, strict=True)])
    else:
        rows = []
        for d, r in zip(devices, results, strict=True):
            if isinstance(r, TargetError):
                rows.append((d.name, d.chipset, f"failed ({r.kind})", None, None, None, None, None, ""))
                continue
            m = r.metrics
            rows.append((d.name, d.chipset, "done", r.stats.p50, r.stats.p90, m.get("load_cold_ms"),
                         m.get("peak_memory_mb"), m.get("compute_share_npu"), r.compute_unit.upper()))
        click.echo(format_table(rows, ["device", "chipset", "status", "p50 ms", "p90 ms", "cold load ms",
                                       "peak MB", "NPU layers", "unit"]))
        for d, r in zip(devices, results, strict=True):
            for w in ([] if isinstance(r, TargetError) else r.warnings):
                click.echo(f"warning: {d.name}: {w}")
    if failed:
        for r in failed:
            click.echo(f"failed: {r}", err=True)
        raise UserError(f"{len(failed)} of {len(results)} devices failed; finished ones are shown above",
                        exit_code=1)



@aihub.command("infer")
@click.argument("artifact", type=click.Path())
@click.option("--device", "selector", required=True, help="One device: a name or chipset:NAME, optionally @OS.")
@click.option("--inputs", "inputs_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help=".npy of shape (N, C, H, W); default: the artifact's seeded reference inputs (parity check).")
@click.option("--allow-data-upload", is_flag=True,
              help="Allow --inputs (real images) to be uploaded to AI Hub in this run.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the outputs to this .npy.")
@click.option("--runtime", default="tflite", show_default=True)
@click.option("--compute-unit", default="npu", show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=3600.0, show_default=True)
@click.option("--state", type=click.Path(), default=None, help="Job journal for resuming.")
@click.option("--poll-interval", type=float, default=10.0, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def aihub_infer(artifact: str, selector: str, inputs_path: str | None, allow_data_upload: bool, out: str | None,
                runtime: str, compute_unit: str, timeout_s: float, state: str | None, poll_interval: float,
                as_json: bool) -> None:
    """Run inputs through ARTIFACT on one AI Hub device. Without --inputs: the seeded
    synthetic inputs, compared with the PyTorch reference outputs."""
    import numpy as np

    from harness.artifacts import Artifact
    from harness.parity import compare, load_reference
    from targets.aihub import AIHubTarget
    from targets.aihub.target import check_inputs_may_leave
    from targets.base import ProfileSettings

    hub = AIHubTarget(journal=state, poll_interval_s=poll_interval)
    art = Artifact.load(artifact)
    hub.check_artifact(art)
    reference = None
    if inputs_path:
        data = np.load(inputs_path)
        inputs = [data[i:i + 1].astype(np.float32) for i in range(len(data))]
    else:
        inputs, reference = load_reference(art.folder)
    check_inputs_may_leave(art, inputs, allow_data_upload)  # before any traffic
    settings = ProfileSettings(runtime=runtime, compute_unit=compute_unit, timeout_s=timeout_s)
    (device,) = hub.select([selector])
    outputs = hub.infer(art, device, inputs, allow_data_upload=allow_data_upload, settings=settings)
    if out:
        np.save(out, np.concatenate(outputs))
    result: dict[str, Any] = {"device": device.name, "inputs": len(inputs),
                              "top1": [int(np.argmax(o)) for o in outputs]}
    if reference is not None:
        parity = compare(reference, outputs)
        result["parity"] = parity.to_dict() | {"failures": parity.failures(art.precision)}
    if as_json:
        emit_json(result)
        return
    click.echo(f"{device.name}: {len(outputs)} outputs, top-1 {result['top1']}")
    if reference is not None:
        p = result["parity"]
        click.echo(f"parity: max abs {p['max_abs']:.3g}, cosine {p['cosine']:.6f}, top-1 {p['top1']:.0%} "
                   f"({'; '.join(p['failures']) or 'within ' + art.precision + ' tolerance'})")

# Android phones on adb (targets/android.py)
@main.group()
def android() -> None:
    """Phones on adb (Snapdragon, MediaTek, ...): list them, profile an artifact on one."""


def adb_option(fn):
    return click.option("--adb", "adb_address", default=None, metavar="HOST:PORT",
                        help="adb server (default: ANDROID_ADB_SERVER_PORT or 127.0.0.1:5037).")(fn)


@android.command("devices")
@adb_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def android_devices(adb_address: str | None, as_json: bool) -> None:
    """Every phone the adb server sees: model, Android, chipset, ABI, RAM, root."""
    from harness.tables import format_table
    from targets.android import AndroidTarget

    target = AndroidTarget(adb_address)
    rows = target.attached()
    if not rows:
        raise UserError(f"no phones attached to the adb server at {target.client.address}; check with `adb devices` "
                        "(USB debugging on, the authorisation prompt accepted)", exit_code=1)
    if as_json:
        emit_json(rows)
        return
    click.echo(format_table(
        [(r["serial"], r["state"], r.get("model", ""), r.get("android", ""), r.get("chipset_name", ""),
          r.get("abi", ""), r.get("ram_mb", ""), "yes" if r.get("rooted") else "no") for r in rows],
        ["serial", "state", "model", "Android", "chipset", "ABI", "RAM (MB)", "rooted"],
    ))


@android.command("profile")
@click.argument("artifact", type=click.Path(exists=True))
@click.option("--serial", required=True, help="The phone (see `vitbench android devices`).")
@click.option("--runner", default=None, type=click.Path(), help="executor_runner or onnxruntime_perf_test built for Android.")
@click.option("--runner-file", "runner_files", multiple=True, type=click.Path(exists=True),
              help="A shared library pushed beside the runner (repeatable).")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Measured executions (no minimum time).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True, help="Warm-up executions.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for the runner.")
@click.option("--compute-unit", default=None, help="npu, gpu or cpu (ONNX: picks the execution provider).")
@click.option("--ep", default=None, help="onnxruntime_perf_test -e: cpu, nnapi, qnn, xnnpack.")
@click.option("--wait-cool/--no-wait-cool", default=True, show_default=True,
              help="Wait (bounded) for thermal status NONE and a cool battery before measuring.")
@click.option("--max-wait", type=float, default=300.0, show_default=True, help="Longest wait for cooling (s).")
@click.option("--poll-s", type=float, default=10.0, show_default=True, help="Seconds between thermal polls.")
@click.option("--max-battery-c", type=float, default=38.0, show_default=True, help="Battery temperature ceiling.")
@click.option("--pin-big-cores", is_flag=True, help="Run the runner under taskset on the fastest cluster(s).")
@click.option("--sustained", type=float, default=0.0, help="Run rounds for this many seconds; report throttling onset.")
@click.option("--parity", is_flag=True, help="Also compare outputs with the reference beside the artifact.")
@adb_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def android_profile(artifact, serial, runner, runner_files, iterations, warmup, threads, compute_unit, ep,
                    wait_cool, max_wait, poll_s, max_battery_c, pin_big_cores, sustained, parity, adb_address,
                    as_json) -> None:
    """Profile ARTIFACT (.pte or .onnx with its manifest) on one phone."""
    from harness.artifacts import Artifact
    from targets.android import AndroidTarget
    from targets.android_runners import FORMAT_KIND
    from targets.base import ProfileSettings

    art = Artifact.load(artifact)
    options = {"wait_cool": wait_cool, "max_wait_s": max_wait, "poll_s": poll_s, "max_battery_c": max_battery_c,
               "pin_big_cores": pin_big_cores, "sustained_s": sustained, "runner_files": list(runner_files),
               "parity": parity}
    options |= {k: v for k, v in (("runner", runner), ("ort_ep", ep)) if v}
    settings = ProfileSettings(threads=threads, compute_unit=compute_unit, options=options)
    settings = settings.with_loop(warmup_iterations=warmup, warmup_seconds=0.0)
    if iterations is not None:
        settings = settings.with_loop(min_iterations=iterations, min_seconds=0.0)
    runners = {FORMAT_KIND.get(art.format, art.format): runner} if runner else None
    with AndroidTarget(adb_address, runners=runners) as target:
        device = target.device(serial)
        prof = target.profile(art, device, settings)
    if as_json:
        emit_json(prof.to_dict())
        return
    click.echo(render_profile(prof))


# -- run, plan, runs, report, gate, compare (plans, store, reports) ----------------------------

def _plan(path: str | None):
    from harness.plan import default_plan, load_plan

    return load_plan(path) if path else default_plan()


store_option = click.option("--store", "store_url", default=None, metavar="URL",
                            help="Results store: a file path or postgresql://... "
                                 "(default: $VITBENCH_STORE or ./vitbench-results.db).")


@main.group()
def plan() -> None:
    """Benchmark plans (TOML)."""


@plan.command("check")
@click.argument("path", required=False)
@click.option("--devices/--no-devices", default=True, show_default=True,
              help="Ask each target which devices it reaches (off: list selectors only).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan_check(path: str | None, devices: bool, as_json: bool) -> None:
    """Validate PATH (default: the built-in plan) and print the expanded matrix."""
    from harness.dispatch import expand
    from harness.tables import format_table

    p = _plan(path)
    cells, _ = expand(p, resolve_targets=devices)
    if as_json:
        emit_json({"plan": p.to_dict(), "hash": p.hash, "cells": [
            {"key": c.key, "model": c.model.label, "export": c.export.label, "target": c.target.name,
             "device": c.device.name, "problem": c.problem} for c in cells]})
        return
    click.echo(f"plan {p.name} ({p.source}), hash {p.hash[:12]}: {len(cells)} cells")
    rows = sorted((c.model.label, c.export.label, c.target.name, c.device.name, c.problem or "") for c in cells)
    click.echo(format_table(rows, ["model", "export", "target", "device", "note"]))


@main.command()
@click.argument("plan_path", required=False, metavar="[PLAN]")
@store_option
@click.option("--resume", "resume_id", default=None, metavar="RUN_ID", help="Finish this run: skip cells done.")
@click.option("--run-id", default=None, help="Name the run (shards of one nightly share it).")
@click.option("--new", "fresh", is_flag=True, help="A new run even if this plan and commit ran before.")
@click.option("--shard", default=None, metavar="I/N", help="Run only slice I of N of the cells.")
@click.option("--cache", default=None, metavar="DIR", help="Artifact cache (default: $VITBENCH_CACHE).")
@click.option("--no-cache", is_flag=True, help="Re-export every artifact.")
@click.option("--out", "out_dir", default="vitbench-out", show_default=True, help="Where reports are written.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def run(plan_path, store_url, resume_id, run_id, fresh, shard, cache, no_cache, out_dir, quiet, as_json) -> None:
    """Run PLAN (default: the built-in plan) and write results to the store."""
    import time
    from dataclasses import asdict

    from harness.dispatch import Dispatcher, default_run_id, git_commit, parse_shard
    from harness.store import open_store

    p = _plan(plan_path)
    shard_t = parse_shard(shard)
    store = open_store(store_url)
    if sum(bool(x) for x in (resume_id, run_id, fresh)) > 1:
        raise UserError("use one of --resume, --run-id and --new")
    if resume_id:
        run_name, resume = resume_id, True
    elif run_id:
        run_name, resume = run_id, False
    else:
        run_name = default_run_id(p, git_commit())
        if fresh:
            run_name += time.strftime("-%Y%m%d-%H%M%S")
        resume = False
    summary = Dispatcher(p, store, shard=shard_t, cache=cache, no_cache=no_cache, quiet=quiet or as_json).run(
        run_name, resume=resume)
    written = _write_reports(store, summary.run_id, out_dir)
    if as_json:
        emit_json(asdict(summary) | {"reports": written})
    else:
        state = "finished" if summary.finished else "incomplete (resume with --resume " + summary.run_id + ")"
        click.echo(f"run {summary.run_id}: {summary.done} done, {summary.failed} failed, {summary.skipped} already "
                   f"done, of {summary.total} cells; {state}; {summary.seconds:.1f} s")
        for f in summary.failures:
            click.echo(f"  failed: {f}")
        for path in written:
            click.echo(f"report: {path}")


def _write_reports(store, run_id: str, out_dir: str) -> list[str]:
    """Markdown and HTML reports of the run, when the reports package can make them."""
    try:
        from reports import write_reports
    except ImportError:
        return []
    return [str(p) for p in write_reports(store, run_id, out_dir)]


@main.command()
@click.argument("run_id", required=False)
@store_option
@click.option("--latency-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Latency budget for every device (default: the plan's, 200 ms).")
@click.option("--percentile", type=click.Choice(["50", "90"]), default=None, help="Gated percentile (default 90).")
@click.option("--accuracy-retention", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Accuracy must keep this fraction of the reference.")
@click.option("--device-budget", "device_budgets", multiple=True, metavar="DEVICE=MS",
              help="A budget for one device (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable verdicts.")
def gate(run_id, store_url, latency_ms, percentile, accuracy_retention, device_budgets, as_json) -> None:
    """Pass / fail / inconclusive for RUN_ID (default: the latest run).

    Exit codes: 0 pass, 1 fail, 3 inconclusive, 2 usage error."""
    from harness import gate as gating
    from harness.store import open_store

    store = open_store(store_url)
    run_row = store.run(run_id) if run_id else store.latest_run()
    cells = store.cells([run_row["id"]])
    known = {c["device_name"] for c in cells} | {f"{c['target']}:{c['device_name']}" for c in cells}
    per_device = {}
    for item in device_budgets:
        dev, _, ms = item.rpartition("=")
        try:
            per_device[dev] = float(ms)
        except ValueError:
            raise UserError(f"--device-budget {item!r}: expected DEVICE=MS") from None
        if not dev or per_device[dev] <= 0:
            raise UserError(f"--device-budget {item!r}: expected DEVICE=MS with MS > 0")
    budgets = gating.with_overrides(gating.budgets_from_plan(run_row.get("plan")), latency_ms,
                                    int(percentile) if percentile else None, accuracy_retention, per_device, known)
    result = gating.evaluate(store, run_row["id"], budgets)
    missing = int(run_row.get("total_cells") or 0) - len(result.cells)
    if as_json:
        emit_json(result.to_dict() | {"missing_cells": missing})
    else:
        click.echo(gating.render(result, missing))
    sys.exit(result.exit_code)


# reports: runs, report, compare (reports/)

@main.command()
@store_option
@click.option("--plan", "plan_name", default=None, help="Only runs of this plan.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Newest runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def runs(store_url, plan_name, limit, as_json) -> None:
    """Runs in the store, newest first: plan, commit, start, status, cells done/failed/total."""
    from harness.tables import format_table
    from reports.frame import open_results, runs_frame

    frame = runs_frame(open_results(store_url), plan_name, limit)
    if as_json:
        emit_json(frame.to_dict(orient="records"))
        return
    if frame.empty:
        click.echo("no runs" + (f" of plan {plan_name!r}" if plan_name else "") + " in the store")
        return
    click.echo(format_table(
        [(r.id, r.plan, r.commit[:10], r.started_at, r.status, r.cells_done, r.cells_failed, r.cells_total)
         for r in frame.itertuples()],
        ["run", "plan", "commit", "started (UTC)", "status", "done", "failed", "total"]))


@main.command()
@click.argument("run_id", required=False)
@click.option("--format", "fmt", default="md", show_default=True, help="md | html | csv | json")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to this file (default: stdout).")
@store_option
@click.option("--history", "history_runs", type=click.IntRange(min=0), default=30, show_default=True,
              help="Runs of the same plan to look back over for trends and changes (0: none).")
def report(run_id, fmt, out, store_url, history_runs) -> None:
    """Report of RUN_ID (default: the latest run): Markdown for a CI job summary, one
    self-contained HTML page with plots, or the cell table as CSV / JSON."""
    from pathlib import Path

    from reports.frame import open_results
    from reports.report import check_format, render_report

    check_format(fmt)
    if out and not Path(out).resolve().parent.is_dir():
        raise UserError(f"cannot write {out}: folder {Path(out).resolve().parent} does not exist")
    text = render_report(open_results(store_url), run_id, fmt, history_runs)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"report written to {out}", err=True)
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("run_a")
@click.argument("run_b")
@store_option
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.01, show_default=True,
              help="Significance level of the Mann-Whitney test.")
@click.option("--min-effect", type=click.FloatRange(min=0), default=0.05, show_default=True,
              help="Smallest change of the median that counts (0.05 = 5%).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compare(run_a, run_b, store_url, alpha, min_effect, as_json) -> None:
    """Per-cell latency change from RUN_A to RUN_B on the raw samples: ratio of medians with
    its bootstrap interval, Mann-Whitney p-value, and slower / faster / no change."""
    from harness.tables import format_table
    from reports.data import records
    from reports.frame import open_results
    from reports.trends import compare_runs

    frame = compare_runs(open_results(store_url), run_a, run_b, alpha, min_effect)
    if as_json:
        emit_json({"run_a": run_a, "run_b": run_b, "alpha": alpha, "min_effect": min_effect,
                   "cells": records(frame)})
        return
    rows = []
    for r in frame.itertuples():
        if r.verdict == "not compared":
            rows.append((r.label, None, None, None, "-", "-", f"not compared ({r.status_a} / {r.status_b})"))
            continue
        ci = f"{r.ratio_ci_low:.3f}-{r.ratio_ci_high:.3f}" if r.ratio_ci_low == r.ratio_ci_low else "-"
        p = "<1e-16" if r.p_value < 1e-16 else (f"{r.p_value:.2g}" if r.p_value == r.p_value else "-")
        rows.append((r.label, r.median_a_ms, r.median_b_ms, round(r.ratio, 3), ci, p, r.verdict))
    click.echo(f"{run_b} against {run_a}: median ratio B/A, 95% bootstrap interval, Mann-Whitney p "
               f"(a change needs p < {alpha:g}, an interval excluding 1 and at least {min_effect:.0%})")
    click.echo(format_table(rows, ["cell", "A p50 ms", "B p50 ms", "ratio", "95% CI", "p", "verdict"],
                            align="lrrrrrl"))
    counts = frame["verdict"].value_counts()
    click.echo(", ".join(f"{counts.get(v, 0)} {v}" for v in ("slower", "faster", "no change")))


# -- train, compress, eval (compression and accuracy) ------------------------------------------

def parse_count(text: str) -> int:
    """'37M', '500k', '1.5e6', '2000000' -> an integer parameter count."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale != 1 else t) * scale
    except ValueError:
        raise UserError(f"--target-params {text!r} is not a count; write e.g. 37M, 500k or 2000000") from None
    if value < 1:
        raise UserError(f"--target-params {text!r} must be positive")
    return int(value)


def data_options(fn):
    fn = click.option("--frontal-only", is_flag=True, help="CheXpert: frontal views only.")(fn)
    fn = click.option("--uncertain", type=click.Choice(["ones", "zeros", "ignore"]), default="ones",
                      show_default=True, help="CheXpert uncertain (-1) labels: U-Ones, U-Zeros or U-Ignore.")(fn)
    fn = click.option("--data", "data", required=True,
                      help="Data set: a folder or .npz (layout detected) or LAYOUT:PATH "
                           "(chexpert, aptos2019, isic2019, busi, medmnist, folder).")(fn)
    return fn


def train_options(fn):
    fn = click.option("--seed", type=int, default=0, show_default=True)(fn)
    fn = click.option("--weight-decay", type=float, default=0.05, show_default=True)(fn)
    fn = click.option("--lr", type=float, default=5e-4, show_default=True)(fn)
    fn = click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)(fn)
    return fn


def _load_splits(data, uncertain, frontal_only, splits=("train", "val", "test")):
    from harness.data import load_dataset

    return {s: load_dataset(data, split=s, uncertain=uncertain, frontal_only=frontal_only or None) for s in splits}


def _say(quiet: bool):
    return (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))


@main.command()
@click.argument("model")
@data_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Checkpoint folder to write.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@train_options
@model_options
@click.option("--quiet", is_flag=True, help="No progress.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def train(model, data, uncertain, frontal_only, out_dir, epochs, batch_size, lr, weight_decay, seed,
          in_chans, num_classes, img_size, head_dim, quiet, as_json):
    """Train (fine-tune) MODEL on a data set: a preset, a checkpoint folder or timm weights.

    The best epoch on the validation split is kept and written to --out; the test metric is
    printed with its bootstrap 95% interval.
    """
    from pathlib import Path

    from harness.compress import TrainSettings, fit, tensors
    from harness.evaluate import evaluate_model
    from harness.model import load_model, save_checkpoint

    splits = _load_splits(data, uncertain, frontal_only)
    tr = splits["train"]
    overrides = model_overrides(in_chans, num_classes, img_size, head_dim)
    if not Path(model).is_dir():  # a preset or an import takes the data set's head and task
        overrides["num_classes"] = overrides["num_classes"] or tr.num_classes
        overrides["task"] = tr.task
        overrides["labels"] = tr.classes
    net = load_model(model, **overrides)
    tr.check_fits(net.config)
    cfg = net.config
    settings = TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed)
    net = fit(net.train(), tensors(tr, cfg.img_size, cfg.in_chans), settings,
              val=tensors(splits["val"], cfg.img_size, cfg.in_chans), metric=tr.metric, task=cfg.task,
              progress=_say(quiet))
    save_checkpoint(net, out_dir)
    result = evaluate_model(net, splits["test"])
    if as_json:
        emit_json({"checkpoint": str(out_dir), "test": result.to_dict()})
        return
    click.echo(f"checkpoint  {out_dir}")
    for r in result.results:
        click.echo(f"test {r.name:18} {r.value:.4f}  95% CI [{r.ci_low:.4f}, {r.ci_high:.4f}]  (n={r.n})")


@main.command()
@click.option("--teacher", required=True, help="Teacher: a vitbench checkpoint folder (or preset/timm weights).")
@data_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Student checkpoint folder.")
@click.option("--target-params", default=None, help="Parameter budget, e.g. 37M or 300k.")
@click.option("--keep-ratio", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Keep this fraction of the teacher's parameters (e.g. 0.125).")
@click.option("--target-size-mb", type=click.FloatRange(0, min_open=True), default=None,
              help="fp32 size budget in MB (4 bytes per parameter).")
@click.option("--steps", type=click.IntRange(min=1), default=4, show_default=True, help="Prune-and-recover steps.")
@click.option("--epochs-per-step", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--final-epochs", type=click.IntRange(min=0), default=4, show_default=True)
@click.option("--kd-weight", type=float, default=1.0, show_default=True, help="Logit KD weight (0: off).")
@click.option("--temperature", type=float, default=2.0, show_default=True)
@click.option("--attn-weight", type=float, default=1.0, show_default=True,
              help="Attention-map alignment weight (0: off).")
@click.option("--no-distill", is_flag=True, help="Recover with the task loss only (no teacher).")
@click.option("--neuron-importance", type=click.Choice(["taylor", "magnitude"]), default="taylor", show_default=True)
@click.option("--work-dir", type=click.Path(file_okay=False), default=None,
              help="Step checkpoints for resuming (default: OUT.work).")
@train_options
@click.option("--quiet", is_flag=True, help="No progress.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def compress(teacher, data, uncertain, frontal_only, out_dir, target_params, keep_ratio, target_size_mb, steps, epochs_per_step,
             final_epochs, kd_weight, temperature, attn_weight, no_distill, neuron_importance, work_dir,
             batch_size, lr, weight_decay, seed, quiet, as_json):
    """Compress a teacher: iterative head + FFN pruning with distillation, to a parameter budget.

    Ends with a report: parameters, size, GMACs, per-block heads and MLP widths kept, teacher
    vs student test metric with intervals, retention, and host latency of both.
    """
    from harness.compress import (
        CompressSettings,
        DistillSettings,
        TrainSettings,
        check_target,
        compare,
        tensors,
    )
    from harness.compress import compress as run_compress
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
    splits = _load_splits(data, uncertain, frontal_only)
    tr = splits["train"]
    tr.check_fits(net.config)
    cfg = net.config
    train_t, val_t, test_t = (tensors(splits[s], cfg.img_size, cfg.in_chans) for s in ("train", "val", "test"))
    settings = CompressSettings(
        target_params=budget, steps=steps, epochs_per_step=epochs_per_step, final_epochs=final_epochs,
        distill=DistillSettings(kd_weight=kd_weight, temperature=temperature, attn_weight=attn_weight),
        use_teacher=not no_distill, neuron_importance=neuron_importance,
        train=TrainSettings(batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed),
    )
    student, history = run_compress(net, train_t, val_t, tr.metric, settings, work_dir or f"{out_dir}.work",
                                    progress=_say(quiet))
    save_checkpoint(student, out_dir)
    extra = () if tr.task == "multilabel" else ("accuracy",)
    report = compare(net, student, test_t, tr.metric, history=history, extra=extra)
    if as_json:
        emit_json({"student": str(out_dir), **report.to_dict()})
        return
    click.echo(f"student     {out_dir}")
    click.echo("\n".join(report.lines()))


@main.command(name="eval")
@click.argument("model")
@data_options
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--target", "target_name", default=None, help="Run an exported artifact on this target (host, ...).")
@click.option("--device", "device_name", default=None, help="Device of the target (default: its first).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def eval_(model, data, uncertain, frontal_only, split, target_name, device_name, as_json):
    """Accuracy of a checkpoint (PyTorch) or of an exported artifact on a target, on a data set.

    MODEL is a checkpoint folder or preset (run in PyTorch), or an artifact folder / model file
    with a manifest (run through --target's infer, on its device).
    """
    from pathlib import Path

    from harness.artifacts import MANIFEST, Artifact
    from harness.evaluate import evaluate_artifact, evaluate_model

    ds = _load_splits(data, uncertain, frontal_only, splits=(split,))[split]
    p = Path(model)
    is_artifact = p.name == MANIFEST or (p / MANIFEST).is_file() or (p.is_file() and (p.parent / MANIFEST).is_file())
    if is_artifact:
        if target_name is None:
            raise UserError(f"{model} is an exported artifact; say where to run it with --target (e.g. --target host)")
        from harness import plugins

        artifact = Artifact.load(p).verify()
        target = plugins.target(target_name)
        if not target.accepts(artifact):
            raise UserError(f"target {target_name!r} cannot run a {artifact.format} artifact")
        devices = target.devices()
        chosen = [d for d in devices if device_name in (None, d.name, d.id)]
        if not chosen:
            raise UserError(f"target {target_name!r} has no device {device_name!r}; "
                            f"available: {', '.join(d.name for d in devices) or 'none'}")
        result = evaluate_artifact(artifact, target, chosen[0], ds)
    else:
        if target_name is not None:
            raise UserError(f"{model} is a checkpoint, not an exported artifact; export it with `vitbench export` "
                            "to run it on a target, or drop --target to evaluate it in PyTorch")
        from harness.model import load_model

        result = evaluate_model(load_model(model), ds)
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(f"model   {model} ({result.source})")
    click.echo(f"data    {result.data} [{ds.layout}, {split}, {result.n} images]")
    for r in result.results:
        click.echo(f"{r.name:18} {r.value:.4f}  95% CI [{r.ci_low:.4f}, {r.ci_high:.4f}]")



if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
