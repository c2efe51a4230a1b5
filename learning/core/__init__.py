"""PrefLab's pure learning library: numpy, torch and gymnasium in; arrays, metrics and state out.

Nothing under ``learning.core`` may import Django or the ``feedback`` app (a test enforces
it): the Django side converts rows into these inputs in ``learning.runner`` and
``learning.rollout_import``. Import submodules explicitly (``learning.core.rollouts``); this
package imports nothing so that using one part never pays for torch or MuJoCo.
"""
