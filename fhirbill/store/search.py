"""placeholder"""
from typing import Any
def match(*a: Any, **k: Any) -> Any:
    raise NotImplementedError
