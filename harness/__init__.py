"""vitbench core: everything between a checkpoint and a stored result."""

__version__ = "0.1.0"
