"""Mapping files: one YAML file per legacy system declares where each case field comes from."""
from .errors import MappingError, MappingFileError  # noqa: F401
from .loader import load_mapping  # noqa: F401
from .engine import Mapping  # noqa: F401
