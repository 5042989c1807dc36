"""An example third-party InvarLock plugin that adds the ``gaussian_noise`` edit.

The plugin module is :mod:`invarlock_plugin_example.plugin`, declared in this distribution's
``pyproject.toml`` under the ``invarlock`` entry-point group.
"""

from __future__ import annotations

from invarlock_plugin_example.noise import GAUSSIAN_NOISE

__version__ = "0.1.0"

__all__ = ["GAUSSIAN_NOISE", "__version__"]
