"""Load a user's image folder ``root/<split>/<class>/<file>`` into a :class:`Dataset`.

The folder layout is the one most image tools use, with one folder per split on top::

    root/
        train/<class>/<file>.png      required
        test/<class>/<file>.png       required
        val/<class>/<file>.png        optional
        pool/<class>/<file>.png       optional, unlabeled improvement set (labels held back)
        pool/<file>.png               optional, unlabeled pool images of unknown class

Everything a user can get wrong (unreadable images, empty class folders, links pointing outside
the folder, a broken metadata table) raises :class:`~dnnsafety.exceptions.InvalidInputError`
with a message that names the file and the fix, or, with ``on_error="skip"``, is skipped with
one warning that lists what was skipped.
"""

from dnnsafety.data.imagefolder._common import IMAGE_EXTENSIONS, POOL_PLACEHOLDER_LABEL
from dnnsafety.data.imagefolder.loader import load_image_folder

__all__ = [
    "IMAGE_EXTENSIONS",
    "POOL_PLACEHOLDER_LABEL",
    "load_image_folder",
]
