"""What vitbench reads from an Android phone over adb: identity (model, Android version, SoC
mapped to a chipset name, ABI, RAM, root) and state (thermal status, battery temperature, CPU
frequencies and governors, screen), with the parsers for each ``getprop``/``dumpsys`` answer.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

SEP = "---vitbench---"

# SoC model (ro.soc.model) or board platform (ro.board.platform) -> (chipset slug, marketing name)
CHIPSETS: dict[str, tuple[str, str]] = {
    "SM8750": ("qualcomm-snapdragon-8elite", "Snapdragon 8 Elite"),
    "SM8650": ("qualcomm-snapdragon-8gen3", "Snapdragon 8 Gen 3"),
    "SM8550": ("qualcomm-snapdragon-8gen2", "Snapdragon 8 Gen 2"),
    "SM8475": ("qualcomm-snapdragon-8plusgen1", "Snapdragon 8+ Gen 1"),
    "SM8450": ("qualcomm-snapdragon-8gen1", "Snapdragon 8 Gen 1"),
    "SM7675": ("qualcomm-snapdragon-7plusgen3", "Snapdragon 7+ Gen 3"),
    "SM7550": ("qualcomm-snapdragon-7gen3", "Snapdragon 7 Gen 3"),
    "SM6450": ("qualcomm-snapdragon-6gen1", "Snapdragon 6 Gen 1"),
    "MT6991": ("mediatek-dimensity-9400", "Dimensity 9400"),
    "MT6989": ("mediatek-dimensity-9300", "Dimensity 9300"),
    "MT6985": ("mediatek-dimensity-9200", "Dimensity 9200"),
    "MT6983": ("mediatek-dimensity-9000", "Dimensity 9000"),
    "MT6897": ("mediatek-dimensity-8300", "Dimensity 8300"),
    "MT6878": ("mediatek-dimensity-7300", "Dimensity 7300"),
    "TENSOR G4": ("google-tensor-g4", "Tensor G4"),
    "TENSOR G3": ("google-tensor-g3", "Tensor G3"),
    "TENSOR G2": ("google-tensor-g2", "Tensor G2"),
    "S5E9945": ("samsung-exynos-2400", "Exynos 2400"),
    "S5E9925": ("samsung-exynos-2200", "Exynos 2200"),
}
# ro.board.platform code names where ro.soc.model is missing (Android < 12)
PLATFORMS: dict[str, str] = {
    "sun": "SM8750",
    "pineapple": "SM8650",
    "kalama": "SM8550",
    "taro": "SM8450",
    "mt6991": "MT6991",
    "mt6989": "MT6989",
    "mt6985": "MT6985",
    "mt6983": "MT6983",
    "zumapro": "TENSOR G4",
    "zuma": "TENSOR G3",
    "gs201": "TENSOR G2",
    "s5e9945": "S5E9945",
    "exynos2400": "S5E9945",
    "s5e9925": "S5E9925",
}
VENDORS = {
    "QTI": "Qualcomm",
    "QUALCOMM": "Qualcomm",
    "MEDIATEK": "MediaTek",
    "GOOGLE": "Google",
    "SAMSUNG": "Samsung",
}
ABI_MACHINE = {
    "arm64-v8a": 183,
    "armeabi-v7a": 40,
    "armeabi": 40,
    "x86_64": 62,
    "x86": 3,
}  # ELF e_machine
THERMAL_STATUS = ("NONE", "LIGHT", "MODERATE", "SEVERE", "CRITICAL", "EMERGENCY", "SHUTDOWN")


def parse_getprop(text: str) -> dict[str, str]:
    """``[key]: [value]`` lines from ``getprop``."""
    return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, flags=re.M))


def chipset(props: dict[str, str]) -> tuple[str, str, str]:
    """(chipset slug, marketing name, SoC model) from ro.soc.model / ro.board.platform;
    an unknown SoC keeps its own model name."""
    model = props.get("ro.soc.model", "").strip()
    key = model.upper()
    if key not in CHIPSETS:
        key = PLATFORMS.get(props.get("ro.board.platform", "").strip().lower(), key)
    if key in CHIPSETS:
        slug, name = CHIPSETS[key]
        return slug, name, model or key
    vendor = VENDORS.get(
        props.get("ro.soc.manufacturer", "").upper(), props.get("ro.soc.manufacturer", "")
    )
    raw = model or props.get("ro.board.platform", "") or props.get("ro.hardware", "unknown")
    return (
        re.sub(r"[^a-z0-9]+", "-", f"{vendor} {raw}".lower()).strip("-"),
        f"{vendor} {raw}".strip(),
        raw,
    )


def device_info_command() -> str:
    return (
        f"getprop; echo {SEP}; cat /proc/meminfo; echo {SEP}; id -u; echo {SEP}; "
        "if command -v su >/dev/null 2>&1; then su -c 'id -u' 2>/dev/null; fi"
    )


@dataclass(frozen=True)
class PhoneInfo:
    serial: str
    model: str
    manufacturer: str
    android: str
    sdk: int
    soc_manufacturer: str
    soc_model: str
    chipset: str  # slug, "qualcomm-snapdragon-8gen3"
    chipset_name: str  # "Snapdragon 8 Gen 3"
    abi: str
    ram_mb: int
    rooted: bool  # adbd runs as root or su grants uid 0
    abis: tuple[str, ...] = ()  # every ABI it runs (ro.product.cpu.abilist), the primary first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_device_info(serial: str, text: str) -> PhoneInfo:
    parts = text.split(SEP) + [""] * 4
    props = parse_getprop(parts[0])
    mem = re.search(r"MemTotal:\s+(\d+)\s*kB", parts[1])
    uid, su_uid = parts[2].strip(), parts[3].strip()
    slug, name, soc_model = chipset(props)
    model = props.get("ro.product.marketname") or props.get("ro.product.model", serial)
    return PhoneInfo(
        serial=serial,
        model=model,
        manufacturer=props.get("ro.product.manufacturer", ""),
        android=props.get("ro.build.version.release", ""),
        sdk=int(props.get("ro.build.version.sdk", "0") or 0),
        soc_manufacturer=props.get("ro.soc.manufacturer", ""),
        soc_model=soc_model,
        chipset=slug,
        chipset_name=name,
        abi=props.get("ro.product.cpu.abi", ""),
        ram_mb=int(mem.group(1)) // 1024 if mem else 0,
        rooted=uid == "0" or su_uid == "0",
        abis=tuple(a for a in props.get("ro.product.cpu.abilist", "").split(",") if a),
    )


# -- state ------------------------------------------------------------------------------------


def state_command() -> str:
    return (
        f"dumpsys thermalservice 2>/dev/null; echo {SEP}; dumpsys battery 2>/dev/null; echo {SEP}; "
        f"dumpsys power 2>/dev/null | grep -E 'mWakefulness=|Display Power'; echo {SEP}; "
        "for d in /sys/devices/system/cpu/cpu[0-9]*; do "
        'echo "${d##*/} $(cat $d/cpufreq/scaling_cur_freq 2>/dev/null) '
        "$(cat $d/cpufreq/cpuinfo_max_freq 2>/dev/null) "
        '$(cat $d/cpufreq/scaling_governor 2>/dev/null)"; done'
    )


@dataclass(frozen=True)
class CpuFreq:
    cpu: int
    cur_khz: int
    max_khz: int
    governor: str


@dataclass(frozen=True)
class PhoneState:
    """What could bias a number, read right before or after a measurement."""

    thermal_status: int | None  # PowerManager thermal status: 0 NONE .. 6 SHUTDOWN; None: unknown
    battery_c: float | None
    skin_c: float | None
    screen: str  # "Awake", "Asleep", "Dozing", "" when unknown
    cpus: tuple[CpuFreq, ...] = field(default_factory=tuple)

    @property
    def thermal_name(self) -> str:
        s = self.thermal_status
        return THERMAL_STATUS[s] if s is not None and 0 <= s < len(THERMAL_STATUS) else "UNKNOWN"

    def is_cool(self, max_battery_c: float) -> bool:
        hot = self.thermal_status is not None and self.thermal_status > 0
        warm = self.battery_c is not None and self.battery_c >= max_battery_c
        return not hot and not warm

    def describe(self) -> str:
        bits = [f"thermal {self.thermal_name}"]
        if self.battery_c is not None:
            bits.append(f"battery {self.battery_c:.1f} °C")
        return ", ".join(bits)

    def big_cores(self) -> list[int]:
        """CPUs of the fastest clusters: max frequency within 20% of the fastest core's."""
        top = max((c.max_khz for c in self.cpus), default=0)
        return [c.cpu for c in self.cpus if top and c.max_khz >= 0.8 * top]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["thermal_name"] = self.thermal_name
        d["cpus"] = [asdict(c) for c in self.cpus]
        return d


def parse_state(text: str) -> PhoneState:
    parts = text.split(SEP) + [""] * 4
    thermal = re.search(r"^\s*Thermal Status:\s*(\d+)", parts[0], flags=re.M)
    skin = re.search(r"mValue=([\d.]+), mType=3\b", parts[0])
    battery = re.search(r"^\s*temperature:\s*(-?\d+)", parts[1], flags=re.M)
    screen = re.search(r"mWakefulness=(\w+)", parts[2])
    cpus = []
    for line in parts[3].splitlines():
        f = line.split()
        if (
            len(f) >= 3
            and f[0].startswith("cpu")
            and f[0][3:].isdigit()
            and f[1].isdigit()
            and f[2].isdigit()
        ):
            cpus.append(CpuFreq(int(f[0][3:]), int(f[1]), int(f[2]), f[3] if len(f) > 3 else ""))
    return PhoneState(
        thermal_status=int(thermal.group(1)) if thermal else None,
        battery_c=int(battery.group(1)) / 10 if battery else None,
        skin_c=float(skin.group(1)) if skin else None,
        screen=screen.group(1) if screen else "",
        cpus=tuple(sorted(cpus, key=lambda c: c.cpu)),
    )


def cpu_mask(cpus: list[int]) -> str:
    """taskset's hexadecimal mask for a CPU list."""
    return format(sum(1 << c for c in cpus), "x")
