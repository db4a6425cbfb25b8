"""Errors and warnings of the data layer, so that a command line can print them as one line.

Every problem with a user's data (a missing folder, a case without masks, masks of different
sizes, an unknown data spec) raises :class:`DataError` with a one-line message that names the
file or folder and says how to fix it. Recoverable oddities (masks that are not strictly binary)
emit :class:`NonBinaryMaskWarning` instead and are repaired in a documented way.
"""

from __future__ import annotations


class DataError(ValueError):
    """The data given to a dataset cannot be used; the message says which file and how to fix it."""


class NonBinaryMaskWarning(UserWarning):
    """A rater mask held values besides 0 and its maximum and was thresholded at half of it."""
