"""Old import path of `tsnet_keras.models.supernet` (the supernet is a model): the same module object.

Kept so that code, notebooks and pickles written against the old path keep working.
"""

import sys

from tsnet_keras.models import supernet as _module

sys.modules[__name__] = _module
