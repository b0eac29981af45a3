"""An image's size in pixels, read from a local copy named in the issue file (``file: photos/x.jpg``).

Editors often have the photo on disk; its header gives width and height, which the HTML needs so
that clients blocking images keep its space. Only the header is read (Pillow opens lazily and
decodes nothing), and only files inside the issue file's folder: issue files come from many hands,
and a path is not an invitation to probe the machine.
"""

from __future__ import annotations

from pathlib import Path

MAX_IMAGE_FILE_BYTES = 50 * 1024 * 1024  # a press photo is a few MB; more is not an image to send


class ImageFileError(ValueError):
    """The file cannot give a size; the message says why, for a located problem."""


def pixel_size(name: str, issue_dir: Path) -> tuple[int, int]:
    """``(width, height)`` of the image ``name`` (relative to ``issue_dir``), from its header."""
    from PIL import Image, UnidentifiedImageError  # heavy; only issue files naming a file pay for it

    base = issue_dir.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise ImageFileError(f"{name!r} is outside the issue file's folder")
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageFileError(f"{name!r} is not a file")
        if size > MAX_IMAGE_FILE_BYTES:
            raise ImageFileError(f"{name!r} is larger than {MAX_IMAGE_FILE_BYTES // 1024 // 1024} MB")
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise ImageFileError(f"no such file {name!r} (paths are relative to the issue file)") from None
    except UnidentifiedImageError:
        raise ImageFileError(f"{name!r} is not an image file Pillow can read") from None
    except Image.DecompressionBombError:
        raise ImageFileError(f"{name!r} claims an implausible size") from None
    except OSError as exc:
        raise ImageFileError(f"{name!r}: {exc.strerror or exc}") from None
    return width, height
