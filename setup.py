"""Metadata lives in setup.cfg; this file only declares the optional C extension.

``greenroom.schema._speedups`` compiles the schema encoder's hot loops (see its header for why).
It is optional: without a C compiler the install still succeeds and greenroom runs the
pure-Python encoder, which produces the same bytes.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "greenroom.schema._speedups",
            ["greenroom/schema/_speedups.c", "greenroom/schema/sp_patch.c",
             "greenroom/schema/sp_collections.c", "greenroom/schema/sp_full.c",
             "greenroom/schema/sp_setattr.c", "greenroom/schema/sp_fields.c",
             "greenroom/schema/sp_pending.c"],
            depends=["greenroom/schema/_speedups.h"],
            optional=True,
        ),
        Extension(  # frames.py's frame parse and reply encode for the usual frame
            "greenroom.protocol._wire",
            ["greenroom/protocol/_wire.c"],
            optional=True,
        ),
    ],
)
