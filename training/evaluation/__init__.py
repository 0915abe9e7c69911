"""Evaluation: metrics, robustness, calibration, Grad-CAM, run comparison and the model card."""
