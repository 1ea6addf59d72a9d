"""HM-VNet: PET/CT head-and-neck tumour segmentation and recurrence-free-survival prediction.

Conventions used everywhere in this package:

* SimpleITK images carry geometry; sizes, spacings and origins are in SimpleITK order ``(x, y, z)``, in mm.
* numpy arrays taken from images (``sitk.GetArrayFromImage``) are ``(z, y, x)``; network tensors are
  ``(N, C, z, y, x)`` with channel 0 = CT and channel 1 = PET.
* Labels: :class:`Label` (0 background, 1 GTVp primary tumour, 2 GTVn lymph nodes), the one source of these ids.
* Survival outputs are risks: higher means earlier relapse (the HECKTOR 2026 ``rfs.json`` writer negates it,
  since that evaluator reads higher = longer survival).
"""

from enum import IntEnum

__version__ = "0.1.0"


class Label(IntEnum):
    """Label ids of every mask this package reads or writes (HECKTOR: 1 = GTVp, 2 = GTVn)."""

    BACKGROUND = 0
    GTVP = 1
    GTVN = 2


LESION_LABELS = (Label.GTVP, Label.GTVN)
"""The foreground labels, in id order."""
