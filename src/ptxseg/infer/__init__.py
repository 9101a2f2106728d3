"""Inference: the Predictor (PyTorch or ONNX Runtime, ensembles, Monte-Carlo dropout) and test-time augmentation."""
