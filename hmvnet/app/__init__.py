"""Applications wiring the stages together: output profiles, the per-case pipeline, batch, HTTP service, QC
pictures and the ``hmvnet`` command."""
