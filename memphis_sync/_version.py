"""The single version string of memphis-sync (read by setup.cfg)."""

__version__ = "0.1.0"
