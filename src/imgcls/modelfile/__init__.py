"""The model file and the run directory: the typed model card (card.py), model.safetensors
read and written without pickle (artifact.py), and every run-directory name (rundir.py)."""
