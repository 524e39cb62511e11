"""Prediction: the Predictor (predictor.py), the batched forward pass it shares with
evaluation (inference.py), its backends (backends/), the torch-free predictor of .onnx files
(onnx_predictor.py), the answer (prediction.py) and an export checked against the Predictor
(parity.py). Lazy: importing this package imports no torch."""
