"""The training tools: lr_find.py (`imgcls lr-find`), compare.py (`imgcls compare`),
tune/ (`imgcls tune`, Optuna), and common.py, the checks and writers they share.

Nothing is imported here: the CLI reads tune's choices (tune/space.py) without loading
torch or Optuna.
"""
