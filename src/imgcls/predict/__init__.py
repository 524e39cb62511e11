"""Prediction: the Predictor of any model file and `open_predictor`, which decides how one
runs (predictor.py), the batched forward pass it shares with evaluation (inference.py), its
backends (backends/), the answer (prediction.py) and an export checked against the Predictor
(parity.py). Lazy: importing this package imports no torch, nor does an .onnx Predictor."""
