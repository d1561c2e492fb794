"""The application layer: the ``ndsc`` command line and the local demo.

It sits above every other package (it wires training, the edge node and the fusion
decoder into commands), so the core ``ndsc`` package imports nothing from here
(``python -m ndsc`` is the one entry point that does, see ``ndsc/__main__.py``).
"""
