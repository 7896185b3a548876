"""What compression cost and bought: size, compute, accuracy and host latency of teacher and
student (and, with a baseline, of the student's shape trained from scratch), measured side by
side in one process; and the three at their clinical operating points."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from harness.compress.baseline import teacher_check
from harness.inference import labels_of, predict
from harness.measure import LatencyStats, LoopSettings, summarize, timed_loop
from harness.metrics import MetricResult, estimate
from harness.model import describe
from harness.retention import Retention, retention

QUICK_LOOP = LoopSettings(
    warmup_iterations=5, warmup_seconds=0.2, min_iterations=30, min_seconds=1.0
)


def host_latency(model: torch.nn.Module, loop: LoopSettings = QUICK_LOOP) -> LatencyStats:
    """In-process PyTorch eager latency of one image (batch 1) on this machine's CPU."""
    cfg = model.config
    model = model.eval().cpu()
    x = torch.zeros(1, cfg.in_chans, cfg.img_size, cfg.img_size)
    with torch.inference_mode():
        samples, _ = timed_loop(lambda: model(x), loop)
    return summarize(samples)


@dataclass
class CompressReport:
    teacher: dict[str, Any]
    student: dict[str, Any]
    teacher_metric: MetricResult
    student_metric: MetricResult
    teacher_latency: LatencyStats
    student_latency: LatencyStats
    extra_metrics: dict[str, dict[str, MetricResult]] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    # the student's test metric over the teacher's on the same images, paired interval
    student_kept: Retention | None = None
    # the student's shape trained from scratch for the same epochs (compress --baseline)
    baseline: dict[str, Any] | None = None
    baseline_metric: MetricResult | None = None
    baseline_kept: Retention | None = None
    baseline_epochs: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def retention(self) -> float:
        """Student metric as a percentage of the teacher's."""
        return 100.0 * self.student_metric.value / self.teacher_metric.value

    @property
    def param_ratio(self) -> float:
        return self.teacher["params"] / self.student["params"]

    @property
    def latency_ratio(self) -> float:
        return self.teacher_latency.p50 / self.student_latency.p50

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            retention_pct=self.retention,
            param_ratio=self.param_ratio,
            latency_ratio=self.latency_ratio,
        )
        return d

    def lines(self) -> list[str]:
        t, s = self.teacher, self.student
        m = self.teacher_metric.name
        scratch = self.baseline_metric is not None
        base = (lambda v: f"{v:>22}") if scratch else (lambda _v: "")
        out = [
            f"{'':22}{'teacher':>22}{'student':>22}" + base("from scratch"),
            f"{'parameters':22}{t['params']:>22,}{s['params']:>22,}" + base(f"{s['params']:,}"),
            f"{'fp32 size (MB)':22}{t['size_mb_fp32']:>22}{s['size_mb_fp32']:>22}",
            f"{'GMACs':22}{t['gmacs']:>22}{s['gmacs']:>22}",
            f"{'host p50 (ms)':22}{self.teacher_latency.p50:>22.3f}"
            f"{self.student_latency.p50:>22.3f}",
            f"{'test ' + m:22}{_fmt(self.teacher_metric):>22}{_fmt(self.student_metric):>22}"
            + (base(_fmt(self.baseline_metric)) if scratch else ""),
        ]
        for name, row in self.extra_metrics.items():
            out.append(
                f"{'test ' + name:22}{_fmt(row['teacher']):>22}{_fmt(row['student']):>22}"
                + (base(_fmt(row["baseline"])) if "baseline" in row else "")
            )
        kept = self.student_kept
        interval = f" [{kept.ci_low:.1%}, {kept.ci_high:.1%}]" if kept is not None else ""
        out.append(
            f"retention: {self.retention:.1f}%{interval} of the teacher's {m}; "
            f"{self.param_ratio:.1f}x fewer parameters; {self.latency_ratio:.2f}x host speed-up "
            "(p50)"
        )
        if self.baseline_kept is not None:
            b = self.baseline_kept
            out.append(
                f"from scratch ({self.baseline_epochs} epochs, task loss only): {b.value:.1%} "
                f"[{b.ci_low:.1%}, {b.ci_high:.1%}] of the teacher's {m}"
            )
        out += [f"warning: {w}" for w in self.warnings]
        out += [
            "",
            f"{'block':>5} {'heads':>12} {'MLP width':>14}",
        ]
        for i, (th, sh, tm, sm) in enumerate(
            zip(t["num_heads"], s["num_heads"], t["mlp_dims"], s["mlp_dims"], strict=True)
        ):
            out.append(f"{i:>5} {f'{sh}/{th}':>12} {f'{sm}/{tm}':>14}")
        return out


def _fmt(r: MetricResult) -> str:
    return f"{r.value:.3f} [{r.ci_low:.3f},{r.ci_high:.3f}]"


def compression_report(
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    test: Dataset,
    metric: str,
    history: list[dict] | None = None,
    extra: tuple[str, ...] = (),
    n_boot: int = 1000,
    loop: LoopSettings = QUICK_LOOP,
    baseline: torch.nn.Module | None = None,
    baseline_epochs: int = 0,
) -> CompressReport:
    """Teacher against student on ``test`` (and ``baseline``, the student's shape trained
    from scratch for ``baseline_epochs``, when given: warned about when it matches or beats
    the teacher)."""
    y = labels_of(test)
    models = {"teacher": teacher, "student": student} | (
        {"baseline": baseline} if baseline is not None else {}
    )
    outputs = {who: predict(model, test) for who, model in models.items()}

    def scored(name: str) -> dict[str, MetricResult]:
        return {who: estimate(name, y, out, n_boot=n_boot) for who, out in outputs.items()}

    def kept(who: str) -> Retention:
        return retention(y, outputs[who], outputs["teacher"], metric, False, n_boot=n_boot)[0]

    main = scored(metric)
    report = CompressReport(
        teacher=describe(teacher.config),
        student=describe(student.config),
        teacher_metric=main["teacher"],
        student_metric=main["student"],
        teacher_latency=host_latency(teacher, loop),
        student_latency=host_latency(student, loop),
        extra_metrics={name: scored(name) for name in extra if name != metric},
        history=list(history or []),
        student_kept=kept("student"),
    )
    if baseline is not None:
        report.baseline = describe(baseline.config)
        report.baseline_metric = main["baseline"]
        report.baseline_kept = kept("baseline")
        report.baseline_epochs = baseline_epochs
        warning = teacher_check(report.baseline_kept, baseline_epochs)
        report.warnings += [warning] if warning else []
    return report
