"""What compression cost and bought: size, compute, accuracy and host latency of teacher and
student, measured side by side in one process."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from harness.inference import score
from harness.measure import LatencyStats, LoopSettings, summarize, timed_loop
from harness.metrics import MetricResult
from harness.model import describe

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
        out = [
            f"{'':22}{'teacher':>22}{'student':>22}",
            f"{'parameters':22}{t['params']:>22,}{s['params']:>22,}",
            f"{'fp32 size (MB)':22}{t['size_mb_fp32']:>22}{s['size_mb_fp32']:>22}",
            f"{'GMACs':22}{t['gmacs']:>22}{s['gmacs']:>22}",
            f"{'host p50 (ms)':22}{self.teacher_latency.p50:>22.3f}"
            f"{self.student_latency.p50:>22.3f}",
            f"{'test ' + m:22}{_fmt(self.teacher_metric):>22}{_fmt(self.student_metric):>22}",
        ]
        for name, pair in self.extra_metrics.items():
            out.append(f"{'test ' + name:22}{_fmt(pair['teacher']):>22}{_fmt(pair['student']):>22}")
        out += [
            f"retention: {self.retention:.1f}% of the teacher's {m}; {self.param_ratio:.1f}x fewer "
            "parameters; "
            f"{self.latency_ratio:.2f}x host speed-up (p50)",
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
) -> CompressReport:
    extra_metrics = {
        name: {
            "teacher": score(teacher, test, name, n_boot),
            "student": score(student, test, name, n_boot),
        }
        for name in extra
        if name != metric
    }
    return CompressReport(
        teacher=describe(teacher.config),
        student=describe(student.config),
        teacher_metric=score(teacher, test, metric, n_boot),
        student_metric=score(student, test, metric, n_boot),
        teacher_latency=host_latency(teacher, loop),
        student_latency=host_latency(student, loop),
        extra_metrics=extra_metrics,
        history=list(history or []),
    )
