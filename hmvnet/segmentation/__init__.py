"""Segmentation stage: preprocessing, the HM-VNet network, sliding-window inference, post-processing, export to the
CT grid (:class:`~hmvnet.segmentation.segmenter.Segmenter`) and training."""
