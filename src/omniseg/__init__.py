"""omniseg: universal, open-vocabulary image segmentation on an ordinary CPU.

import omniseg
seg = omniseg.load()
result = seg.segment("street.jpg", classes=["sky", "road", "red car"])
result.label_map, result.classes, result.overlay(), result.to_json()
"""

from omniseg.errors import InputError, MissingResourceError, OmnisegError
from omniseg.regions import Regions
from omniseg.segmenter import Segmenter, SemanticResult, load
from omniseg.vocab import Vocabulary

__version__ = "0.1.0"

__all__ = [
    "InputError",
    "MissingResourceError",
    "OmnisegError",
    "Regions",
    "SemanticResult",
    "Segmenter",
    "Vocabulary",
    "__version__",
    "load",
]
