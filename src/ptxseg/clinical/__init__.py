"""The clinical answer for one radiograph: inputs, the two-phase pipeline, overlays and Grad-CAM."""
