"""HM-VNet: PET/CT head-and-neck tumour segmentation and recurrence-free-survival prediction.

Axis conventions used everywhere in this package:

* SimpleITK images carry geometry; sizes, spacings and origins are in SimpleITK order ``(x, y, z)``, in mm.
* numpy arrays taken from images (``sitk.GetArrayFromImage``) are ``(z, y, x)``; network tensors are
  ``(N, C, z, y, x)`` with channel 0 = CT and channel 1 = PET.
* Labels: 0 background, 1 GTVp (primary tumour), 2 GTVn (lymph nodes).
* Survival outputs are risks: higher means earlier relapse.
"""

__version__ = "0.1.0"

LABEL_BACKGROUND = 0
LABEL_GTVP = 1
LABEL_GTVN = 2
