"""Android phones on adb (Snapdragon, MediaTek): vitbench's own adb host-protocol client,
phone probes, native runners, ETDump decoding, and the target that ties them together."""

from targets.android.target import AndroidTarget

__all__ = ["AndroidTarget"]
