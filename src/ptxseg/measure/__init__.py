"""Pure numpy-in/numpy-out measurements: SIIM metrics, the operating point and its grid search, the lung
sides, pneumothorax size and the quality gate."""
