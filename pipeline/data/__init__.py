"""Datasets: the embedded `shapes` generator, COCO-layout readers and the prepared table."""
