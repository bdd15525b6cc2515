"""avsf: a benchmark and ablation-study suite for Audiovisual SlowFast Networks."""

__version__ = "0.1.0"
