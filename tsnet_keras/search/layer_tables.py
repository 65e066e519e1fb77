"""Old import path of `tsnet_keras.space.layer_tables` (the layer tables read the space only): the same module object.

Kept so that code, notebooks and pickles written against the old path keep working.
"""

import sys

from tsnet_keras.space import layer_tables as _module

sys.modules[__name__] = _module
