"""Reading and writing cases (grand-challenge, HECKTOR training layout, pairs, DICOM), clinical records, the
Task-2 table, atomic writers, weights files and fold splitting."""
