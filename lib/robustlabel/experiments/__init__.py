"""Paper reproductions: one module per reproduced table or figure.

Each ``scripts/<name>.py`` is an argument parser and a call into a module here; the modules
stand on :mod:`robustlabel.engine`, :mod:`robustlabel.networks`, :mod:`robustlabel.losses` and
:mod:`robustlabel.data`, never the other way round.

What every experiment shares: :mod:`.tables` (measurements → CSV/JSON/Markdown beside the
paper), :mod:`.figures` (matplotlib panels), :mod:`.store` (resumable results, rank-0 writer)
and :mod:`.cli` (the start of every script).

The two PASCAL VOC experiments also share :mod:`.voc_data` (the data source, ``RunOptions``),
:mod:`.voc_fcn_training` (``FcnConfig``, the FCN solver) and :mod:`.voc_cli` (their scripts'
options turned into those configs).
"""
