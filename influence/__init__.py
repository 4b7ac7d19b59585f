"""Training-data influence along the training trajectory: estimators, ground truth and checks.

Submodules: ``data``, ``noise``, ``models``, ``train``, ``loo``, ``estimators``, ``metrics``,
``curation``, ``bounds``, ``provenance``.
"""

__version__ = "0.1.0"
