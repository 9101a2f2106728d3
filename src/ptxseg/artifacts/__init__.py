"""What a trained model is on disk: its card, weights and resume states, ensembles, ONNX Runtime bundles,
and the models shipped inside ptxseg."""
