# A private compiled module: its names are typed Any, so that its kernels may change freely.
from typing import Any

def __getattr__(name: str) -> Any: ...
