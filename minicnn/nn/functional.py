"""``minicnn.nn.functional`` is ``minicnn.functional`` (as torch.nn.functional), re-exported."""

from ..functional import *  # noqa: F401,F403
from ..functional import __all__  # noqa: F401
