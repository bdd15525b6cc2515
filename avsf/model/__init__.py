"""The AVSlowFast model family (paper Sec. 3, Table 1): `build_model(cfg.model)`."""

from avsf.model.avslowfast import AVSlowFast, LateEnsemble
from avsf.model.builder import build_model, validate
from avsf.model.compile import compile_model

__all__ = ["AVSlowFast", "LateEnsemble", "build_model", "compile_model", "validate"]
