"""Where the committed artifacts live.

Kept in its own module (not ``models/__init__``): an editable install made before
``models/__init__.py`` existed imports ``models`` as a namespace package, which skips
``__init__`` but still finds submodules.
"""

from pathlib import Path

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
# ../shared/data next to the project checkout (where CI and developers find it); the stream
# side's SWINGDIAL_SHARED_DATA overrides it.
DEFAULT_SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
