import sys
from pathlib import Path

# Make `tests.support` importable and the handlers loadable by path.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
