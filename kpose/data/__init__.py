"""Datasets: readers (COCO, MPII), the embedded synthetic dataset and the tf.data pipeline."""
