"""Sub-commands of the ``robustlabel`` CLI (see :mod:`robustlabel.cli`)."""
