"""Old import path of `tsnet_keras.space.search_space` (the search spaces; "specs" are the layer specs of `space/plan.py`): the same module object.

Kept so that code, notebooks and pickles written against the old path keep working.
"""

import sys

from tsnet_keras.space import search_space as _module

sys.modules[__name__] = _module
