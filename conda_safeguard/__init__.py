"""conda-safeguard: makes conda environments hard to lose. Never imports conda."""

__version__ = "0.1.0"
