"""Label names and colours the app announces to MONAI Label clients (3D Slicer, OHIF).

How the stock MONAI Label Slicer plugin uses them (plugins/slicer/MONAILabel/MONAILabel.py):

* on *Next sample* it creates one empty segment per name of ``/info`` ``labels`` (the names of
  every model's ``labels`` dict sorted by value), coloured from its ``GenericAnatomyColors``
  table looked up by the lower-case name;
* it imports a result label map with ``ImportLabelmapToSegmentationNode(..., segmentIds)``,
  which maps label value ``k`` to the ``k``-th segment (``k = 1..N``);
* on *Submit label* it exports the segments (all but ``background``) with
  ``ExportSegmentsToLabelmapNode``, segment ``k`` becoming value ``k``.

BraTS values are ``{1, 2, 4}``, not ``1..3``.  Listing the unused value 3 (BraTS ≤ 2016
"non-enhancing tumour", merged into 1 since 2017) as its own, always empty segment keeps the
segment index equal to the BraTS value in both directions, so enhancing tumour stays 4 from
inference to the clinician's submitted ``final`` label.  A ``final`` label that does contain 3
is refused on upload (see :mod:`lib.datastore`).

"necrosis" and "edema" are names in the plugin's colour table, so Slicer colours them itself;
the colours below are also sent in the result JSON (``label_colors``) for other clients.
"""

from __future__ import annotations

#: label name -> stored (BraTS) value, in value order
LABEL_NAMES: dict[str, int] = {
    "necrosis": 1,  # necrotic / non-enhancing tumour core (NCR/NET)
    "edema": 2,  # peritumoural oedema (ED)
    "unused (BraTS label 3)": 3,  # keeps segment index == BraTS value in Slicer; always empty
    "enhancing tumor": 4,  # GD-enhancing tumour (ET)
}

#: label name -> RGB in 0..255 (necrosis and edema as in Slicer's GenericAnatomyColors)
LABEL_COLORS: dict[str, tuple[int, int, int]] = {
    "necrosis": (216, 191, 216),
    "edema": (140, 224, 228),
    "unused (BraTS label 3)": (100, 100, 130),
    "enhancing tumor": (255, 215, 0),
}
