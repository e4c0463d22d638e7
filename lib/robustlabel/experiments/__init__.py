"""Paper reproductions: one module per reproduced table or figure.

Each ``scripts/<name>.py`` is an argument parser and a call into a module here; the modules
stand on :mod:`robustlabel.engine`, :mod:`robustlabel.networks`, :mod:`robustlabel.losses` and
:mod:`robustlabel.data`, never the other way round.
"""
