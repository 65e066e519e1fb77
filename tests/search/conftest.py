"""Search-test set-up: graph optimisation off while tracing supernets.

Grappler's first-call optimisation of a supernet step (many switch branches)
costs more than the few steps the tests run, so it is disabled for these tests
and restored afterwards.
"""

import pytest
import tensorflow as tf


@pytest.fixture(autouse=True, scope="package")
def _fast_graph_start():
    previous = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    yield
    tf.config.optimizer.set_experimental_options(
        {"disable_meta_optimizer": previous.get("disable_meta_optimizer", False)}
    )
