"""imgcls's version, in a module of its own: the model card records it, and importing it from
the package root would tie artifact.py to the API functions there, which import artifact."""

__version__ = "0.1.0"
