"""Old import path of `tsnet_keras.space.presets` (presets are architectures of the space): the same module object.

Kept so that code, notebooks and pickles written against the old path keep working.
"""

import sys

from tsnet_keras.space import presets as _module

sys.modules[__name__] = _module
