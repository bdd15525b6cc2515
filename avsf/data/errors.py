"""The data package's errors; each message names the file, the row and what to do."""

from __future__ import annotations


class ManifestError(ValueError):
    """A manifest, list file or annotation file is wrong; raised before any work is done."""


class TooManyFailedClips(RuntimeError):
    """More clips failed to decode than `data.max_failure_share` allows (the trainer and
    `avsf train` catch this class: `from avsf.data import TooManyFailedClips`)."""


class PrepareError(RuntimeError):
    """`avsf data prepare` cannot go on (e.g. the output disk is full); rows finished so far are kept."""
