"""The model configuration: what `config.json` holds beside the weights.

Every block may have its own number of heads and its own MLP width, which is what head and
FFN pruning produce. The head dimension is shared by all heads of the model, as in timm.

Four fields describe timm's variants of the plain ViT: ``class_token`` (False: no class token,
``pos_embed`` covers the patches only), ``global_pool`` ("token": the class token's features;
"avg": the mean of the patch tokens), ``fc_norm`` (the final LayerNorm after pooling, as
``fc_norm``, instead of before it, as ``norm``: MAE-pretrained ViTs such as RETFound) and
``pre_norm`` (a LayerNorm ``norm_pre`` between the position embedding and the first block: CLIP
image towers). At their defaults they are left out of ``config.json`` and of the model hash, so
a plain ViT's files are the same as before they existed.

A binary model (two classes, not multi-label) may carry its clinical operating point:
``decision_threshold`` (in (0, 1), on the positive-class probability; a case is positive at
>= threshold) and ``threshold_rule`` (how it was chosen: "youden", "sensitivity>=0.95").
Unset, they are left out of ``config.json`` too (:mod:`harness.operating_point`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

TASKS = ("multiclass", "multilabel", "ordinal")
POOLS = ("token", "avg")
# the variant fields and the plain ViT's values, which config.json leaves out
VARIANT_DEFAULTS: dict[str, Any] = {
    "class_token": True,
    "global_pool": "token",
    "fc_norm": False,
    "pre_norm": False,
}
# the operating-point fields, left out of config.json while unset
OPERATING_DEFAULTS: dict[str, Any] = {"decision_threshold": None, "threshold_rule": ""}


@dataclass(frozen=True)
class ViTConfig:
    img_size: int
    patch_size: int
    in_chans: int
    num_classes: int
    embed_dim: int
    head_dim: int
    num_heads: tuple[int, ...]
    mlp_dims: tuple[int, ...]
    task: str = "multiclass"
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    seed: int = 0
    name: str = ""
    labels: tuple[str, ...] = field(default=())
    class_token: bool = True
    global_pool: str = "token"
    fc_norm: bool = False
    pre_norm: bool = False
    decision_threshold: float | None = None
    threshold_rule: str = ""

    def __post_init__(self) -> None:
        # Accept lists from JSON and keep the dataclass hashable.
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        object.__setattr__(self, "mlp_dims", tuple(int(m) for m in self.mlp_dims))
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        self.validate()

    # -- derived -------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self.num_heads)

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def num_prefix_tokens(self) -> int:
        return 1 if self.class_token else 0

    @property
    def num_tokens(self) -> int:
        return self.num_patches + self.num_prefix_tokens

    # -- checks --------------------------------------------------------------------------
    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"invalid model config: {msg}")

        for name in ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "head_dim"):
            value = getattr(self, name)
            need(
                isinstance(value, int) and not isinstance(value, bool) and value > 0,
                f"{name} must be a positive integer, got {value!r}",
            )
        need(
            self.img_size % self.patch_size == 0,
            f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}",
        )
        need(len(self.num_heads) > 0, "num_heads must list at least one block")
        need(
            len(self.num_heads) == len(self.mlp_dims),
            f"num_heads has {len(self.num_heads)} blocks but mlp_dims has {len(self.mlp_dims)}",
        )
        need(
            all(h >= 1 for h in self.num_heads),
            f"every block needs at least one head: {list(self.num_heads)}",
        )
        need(
            all(m >= 1 for m in self.mlp_dims),
            f"every block needs an MLP width >= 1: {list(self.mlp_dims)}",
        )
        need(self.task in TASKS, f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        need(
            not self.labels or len(self.labels) == self.num_classes,
            f"{len(self.labels)} labels given for {self.num_classes} classes",
        )
        need(self.norm_eps > 0, f"norm_eps must be positive, got {self.norm_eps}")
        need(
            self.global_pool in POOLS,
            f"global_pool must be one of {', '.join(POOLS)}, got {self.global_pool!r}",
        )
        need(
            self.class_token or self.global_pool != "token",
            "global_pool 'token' needs a class token (class_token true)",
        )
        for name in ("class_token", "fc_norm", "pre_norm"):
            value = getattr(self, name)
            need(isinstance(value, bool), f"{name} must be true or false, got {value!r}")
        self._validate_threshold(need)

    def _validate_threshold(self, need) -> None:
        t = self.decision_threshold
        if t is None:
            need(not self.threshold_rule, "threshold_rule given without decision_threshold")
            return
        need(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < 1,
            f"decision_threshold must be a number in (0, 1), got {t!r}",
        )
        need(
            self.task != "multilabel" and self.num_classes == 2,
            "decision_threshold applies to binary models (2 classes, not multi-label)",
        )
        need(isinstance(self.threshold_rule, str), "threshold_rule must be a string")

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["num_heads"] = list(self.num_heads)
        d["mlp_dims"] = list(self.mlp_dims)
        d["labels"] = list(self.labels)
        for name, default in (VARIANT_DEFAULTS | OPERATING_DEFAULTS).items():
            if d[name] == default:
                del d[name]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> ViTConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{source}: unknown field(s) {', '.join(unknown)}; known fields: "
                f"{', '.join(fields)}"
            )
        required = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [n for n in required if n not in data]
        if missing:
            raise ConfigError(f"{source}: missing field(s) {', '.join(missing)}")
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(
                f"{source}: {str(exc).removeprefix('invalid model config: ')}"
            ) from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_json_file(cls, path: Path) -> ViTConfig:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
        return cls.from_dict(data, source=str(path))

    def replace(self, **changes: Any) -> ViTConfig:
        return dataclasses.replace(self, **changes)

    @staticmethod
    def uniform(depth: int, num_heads: int, mlp_dim: int, **kwargs: Any) -> ViTConfig:
        embed_dim = kwargs["embed_dim"]
        head_dim = kwargs.pop("head_dim", embed_dim // num_heads)
        if head_dim * num_heads != embed_dim and "head_dim" not in kwargs:
            raise ConfigError(f"embed_dim {embed_dim} is not divisible by {num_heads} heads")
        return ViTConfig(
            num_heads=(num_heads,) * depth, mlp_dims=(mlp_dim,) * depth, head_dim=head_dim, **kwargs
        )


def count_params(cfg: ViTConfig) -> int:
    """Parameter count from the configuration alone (no weights are built)."""
    d, hd = cfg.embed_dim, cfg.head_dim
    n = cfg.in_chans * cfg.patch_size**2 * d + d  # patch_embed.proj
    n += d * cfg.num_prefix_tokens + cfg.num_tokens * d  # cls_token, pos_embed
    n += 2 * d if cfg.pre_norm else 0  # norm_pre
    bias = 1 if cfg.qkv_bias else 0
    for h, m in zip(cfg.num_heads, cfg.mlp_dims, strict=False):
        inner = h * hd
        n += 2 * d  # norm1
        n += d * 3 * inner + 3 * inner * bias  # attn.qkv
        n += inner * d + d  # attn.proj
        n += 2 * d  # norm2
        n += d * m + m  # mlp.fc1
        n += m * d + d  # mlp.fc2
    n += 2 * d  # norm (or fc_norm)
    n += d * cfg.num_classes + cfg.num_classes  # head
    return n


def count_macs(cfg: ViTConfig) -> int:
    """Multiply-accumulates of one forward pass at the configured input size (batch 1)."""
    d, hd, t = cfg.embed_dim, cfg.head_dim, cfg.num_tokens
    macs = cfg.num_patches * d * cfg.in_chans * cfg.patch_size**2
    for h, m in zip(cfg.num_heads, cfg.mlp_dims, strict=False):
        inner = h * hd
        macs += t * d * 3 * inner  # qkv
        macs += 2 * h * t * t * hd  # q @ k^T and attn @ v
        macs += t * inner * d  # proj
        macs += 2 * t * d * m  # fc1 + fc2
    macs += d * cfg.num_classes
    return macs


def linear_macs(cfg: ViTConfig) -> int:
    """The part of `count_macs` spent in linear layers and attention matmuls (not the conv)."""
    return count_macs(cfg) - cfg.num_patches * cfg.embed_dim * cfg.in_chans * cfg.patch_size**2


def describe(cfg: ViTConfig) -> dict[str, Any]:
    params = count_params(cfg)
    return {
        "name": cfg.name,
        "params": params,
        "params_m": round(params / 1e6, 2),
        "size_mb_fp32": round(params * 4 / 1e6, 1),
        "gmacs": round(count_macs(cfg) / 1e9, 2),
        "img_size": cfg.img_size,
        "patch_size": cfg.patch_size,
        "in_chans": cfg.in_chans,
        "num_classes": cfg.num_classes,
        "embed_dim": cfg.embed_dim,
        "head_dim": cfg.head_dim,
        "depth": cfg.depth,
        "task": cfg.task,
        "num_heads": list(cfg.num_heads),
        "mlp_dims": list(cfg.mlp_dims),
    } | {
        k: getattr(cfg, k)
        for k, v in (VARIANT_DEFAULTS | OPERATING_DEFAULTS).items()
        if getattr(cfg, k) != v
    }


def is_square(n: int) -> bool:
    r = math.isqrt(n)
    return r * r == n
