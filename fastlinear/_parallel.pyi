from typing import Dict

PATHS: Dict[str, int]

def openmp_enabled() -> bool: ...
