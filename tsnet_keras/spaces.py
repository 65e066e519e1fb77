"""Old import path of `tsnet_keras.space.named_spaces` (named spaces belong to space/): the same module object.

Kept so that code, notebooks and pickles written against the old path keep working.
"""

import sys

from tsnet_keras.space import named_spaces as _module

sys.modules[__name__] = _module
