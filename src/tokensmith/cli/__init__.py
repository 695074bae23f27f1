"""The ``tokensmith`` command line and terminal presentation. Nothing here is imported by the library core.

``presenter`` needs only the standard library (and ``segno`` for QR codes, optional); ``main`` needs ``click``
(the ``cli`` extra).
"""
