"""Synthetic PET/CT phantoms: anatomy and lesions (``phantom``) and the cohort generator (``cohort``)."""
