"""Imagery errors: each names the object (collection, item, href) and the problem."""

from __future__ import annotations


class ImageryError(RuntimeError):
    """Imagery could not be found or read; the message names the object and the problem."""


class NoItemsError(ImageryError):
    """A search found nothing for the region, date and cloud limit."""


class ItemMismatchError(ImageryError):
    """An item lacks a band asked for, or its COG is not in the CRS the item declares."""


class ObjectMissingError(ImageryError):
    """A band's object does not exist."""


class CorruptObjectError(ImageryError):
    """A band's object exists but is not a readable GeoTIFF (corrupt or truncated)."""
