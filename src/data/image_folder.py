"""Any folder of images, with or without class sub-folders (torchvision ``ImageFolder`` layout)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from src.data.base import GenerativeDataModule, split_by_fractions
from src.utils.errors import UserError
from src.utils.logging import get_logger
from src.utils.types import Fraction, PositiveInt

log = get_logger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# PIL modes of single-channel images (with alpha: "LA"; 16- and 32-bit grey: "I;16...", "I", "F").
GREY_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})


class ImageFolderDataModule(GenerativeDataModule):
    """Images under ``root``, resized (shorter side) and centre-cropped to ``image_size``.

    Layout: ``root/<class>/<image>`` gives labelled data (classes sorted by name, as torchvision's
    ``ImageFolder``); images directly under ``root`` (searched recursively) give unlabelled data
    (``num_classes=0``). Images are decoded once, in parallel threads, into memory.
    Splits: ``val_fraction`` and ``test_fraction`` of the images, drawn by ``split_seed``.
    ``channels="auto"`` is 1 when every image is greyscale (its PIL mode, read from the header),
    else 3; decided when the folder is scanned, before any model is built.
    """

    name = "image_folder"

    def __init__(
        self,
        *,
        root: str,
        image_size: PositiveInt = 64,
        channels: PositiveInt | Literal["auto"] = "auto",
        val_fraction: Fraction = 0.05,
        test_fraction: Fraction = 0.05,
        decode_threads: PositiveInt = 4,
        **kwargs,
    ) -> None:
        if channels not in (1, 3, "auto"):
            raise UserError(
                f"data.channels={channels} is not supported for image folders: use 1 (grey), 3 (RGB) or auto."
            )
        super().__init__(image_size=image_size, channels=None if channels == "auto" else channels, **kwargs)
        self.root = Path(root).expanduser()
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.decode_threads = decode_threads
        self._files: list[tuple[Path, int]] | None = None

    def resolve_spec(self) -> None:
        self.scan()
        super().resolve_spec()

    def prepare_data(self) -> None:
        self.scan()

    def scan(self) -> list[tuple[Path, int]]:
        """Lists the images and infers the classes; fails early on a missing or empty folder."""
        if self._files is not None:
            return self._files
        if not self.root.is_dir():
            raise UserError(
                f"data.root={self.root} is not a directory: point data.root at a folder of images."
            )
        top_level = sorted(p for p in self.root.iterdir() if _is_image(p))
        class_dirs = sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if top_level or not class_dirs:
            files = [(p, 0) for p in sorted(_images_under(self.root))]  # num_classes=0: no labels
            self.class_names = []
        else:
            files = []
            self.class_names = []
            for class_dir in class_dirs:
                images = sorted(_images_under(class_dir))
                if images:
                    files.extend((p, len(self.class_names)) for p in images)
                    self.class_names.append(class_dir.name)
        if not files:
            raise UserError(
                f"data.root={self.root} holds no images ({', '.join(IMAGE_EXTENSIONS)}): point data.root at a folder of images."
            )
        self.num_classes = len(self.class_names)
        self.data_source = "files"
        if self.channels is None:
            self.channels = self._infer_channels([path for path, _ in files])
        self._files = files
        return files

    def _infer_channels(self, paths: list[Path]) -> int:
        """``data.channels=auto``: 1 when every image is greyscale, else 3 (headers only, no decoding)."""
        with ThreadPoolExecutor(max_workers=self.decode_threads) as pool:
            modes = list(pool.map(_mode, paths))
        colour = next(((path, mode) for path, mode in zip(paths, modes) if mode not in GREY_MODES), None)
        if colour is None:
            log.info(
                f"data.channels=auto: 1, every one of the {len(paths)} images under {self.root} is greyscale"
            )
            return 1
        log.info(
            f"data.channels=auto: 3, {colour[0]} is not greyscale (mode {colour[1]}); "
            "data.channels=1 would convert the colour images to grey"
        )
        return 3

    def _decode(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as image:
                image = image.convert("RGB" if self.channels == 3 else "L")
                image = TF.resize(image, [self.image_size], antialias=True)
                image = TF.center_crop(image, [self.image_size, self.image_size])
                array = np.asarray(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise UserError(
                f"data.root: cannot read image {path} ({exc}): remove or replace the file."
            ) from None
        return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)

    def _load(self) -> dict[str, tuple[Tensor, Tensor]]:
        files = self.scan()
        with ThreadPoolExecutor(max_workers=self.decode_threads) as pool:
            arrays = list(pool.map(self._decode, [path for path, _ in files]))
        x = torch.from_numpy(np.stack(arrays))
        y = torch.tensor([label for _, label in files], dtype=torch.long)
        train, val, test = split_by_fractions(x, y, [self.val_fraction, self.test_fraction], self.split_seed)
        return {"train": train, "val": val, "test": test}


def _mode(path: Path) -> str:
    try:
        with Image.open(path) as image:
            return image.mode
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise UserError(f"data.root: cannot read image {path} ({exc}): remove or replace the file.") from None


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if _is_image(p)]
