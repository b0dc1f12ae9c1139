"""Camera backends behind `rig.camera.Camera`: ``pylon``, ``genicam`` (harvesters) and ``sim``.

Each module imports its hardware library lazily and offers ``list_cameras(**options)``.
"""
