"""Survival stage: mask variants, radiomics, clinical encoder, fusion network, losses, ICARE, predictor, training."""
