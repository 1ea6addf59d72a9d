"""T and N staging (HECKTOR 2026) from the final segmentation: geometry features, the AJCC/UICC 7th-edition
geometry rule and a learned classifier saved as JSON. Independent of the survival model."""
