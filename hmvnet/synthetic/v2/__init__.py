"""Generator v2 (``hmvnet synth``, the default): phantoms closer to real HECKTOR scans.

Modules: :mod:`.protocols` (centres, scanner protocols, fields of view), :mod:`.anatomy` (decoys, metal, vessels,
the body below the neck), :mod:`.lesions`, :mod:`.truth` (imperfect labels, misregistration), :mod:`.outcomes`
(clinical values, missingness by centre, T/N stage, hazard) and :mod:`.case` (draw and render one case).
The target figures are the real-data statistics in ``docs/synth_realism.md``.
"""
