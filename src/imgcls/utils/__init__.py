"""Small torch-free helpers every layer may use: atomic files, CSV-safe cells, usable CPUs and
their kind, the cache folder, optional extras. Nothing here imports another imgcls package
but errors."""
