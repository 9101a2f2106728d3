"""Deployment: ptxseg export (ONNX, INT8) into a bundle."""
