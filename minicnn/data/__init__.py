"""minicnn.data: image folders, transforms, a DataLoader with worker processes, built-in dataset.

>>> from minicnn.data import DataLoader, ImageFolder, builtin_dataset, transforms as T
>>> root = builtin_dataset()                                  # generated on first use, cached
>>> train = ImageFolder(f"{root}/train", T.Compose([T.RandomCrop(32, padding=4),
...                      T.RandomHorizontalFlip(), T.ToFloatCHW(), T.Normalize()]))
>>> for images, labels in DataLoader(train, batch_size=128, shuffle=True, num_workers=2, seed=0):
...     ...                                                  # NumPy arrays (N, 3, 32, 32), (N,)
"""

from . import transforms
from .folder import (
    IMG_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    ImageFolder,
    UnreadableDataset,
    UnreadableImage,
    find_classes,
    load_image,
)
from .loader import DataLoader, DataLoaderError, UnreadableImageWarning, default_collate
from .sampler import DistributedSampler
from .shapes import builtin_dataset, cache_root

__all__ = [
    "DataLoader",
    "DataLoaderError",
    "DistributedSampler",
    "IMG_EXTENSIONS",
    "ImageFolder",
    "MAX_IMAGE_PIXELS",
    "UnreadableDataset",
    "UnreadableImage",
    "UnreadableImageWarning",
    "builtin_dataset",
    "cache_root",
    "default_collate",
    "find_classes",
    "load_image",
    "transforms",
]
