"""Export: the ONNX and TorchScript writers (writers.py, formats.py), the ONNX file the
backends cache (onnx_file.py), int8 quantization and the checks that travel with an export
(quantize.py, int8_record.py, int8_embedded.py, int8_trust.py, export_check.py), the cache
beside a model file (cache.py) and the one onnxruntime session wrapper (session.py).
Nothing here imports the Predictor: export sits below prediction."""
