"""Make the x12 test helpers importable as `x12_helpers` whether or not tests/ is a package."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
