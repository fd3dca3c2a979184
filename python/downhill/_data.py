"""Datasets from tensors, NumPy arrays, SciPy sparse matrices and callables."""

import torch

from . import _downhill


def as_tensor(array):
    """`array` as a tensor: a tensor as it is, a NumPy array shared without a copy where
    torch.from_numpy can (else copied), a SciPy sparse matrix as a sparse COO tensor."""
    if isinstance(array, torch.Tensor):
        return array
    if hasattr(array, "tocoo") and hasattr(array, "nnz"):  # scipy.sparse
        import numpy as np

        coo = array.tocoo()
        indices = torch.from_numpy(np.vstack((coo.row, coo.col)).astype(np.int64))
        return torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data), coo.shape).coalesce()
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency of torch's Debian package
        np = None
    if np is not None and isinstance(array, np.ndarray):
        try:
            return torch.from_numpy(array)
        except (TypeError, ValueError):  # a read-only or non-native array: copied
            return torch.as_tensor(np.array(array))
    return torch.as_tensor(array)


def as_batch(value):
    """A batch (a list of tensors) from a tensor, an array or a sequence of them."""
    if isinstance(value, (list, tuple)):
        return [as_tensor(item) for item in value]
    return [as_tensor(value)]


class Dataset(_downhill._Dataset):
    """Mini-batches for training or validation.

    Dataset(arrays, batch_size=32, iteration_size=None, axis=0, shuffle=True, name=None,
            rng=None, shuffle_samples=False)

    `arrays` is a list of tensors, NumPy arrays (shared without a copy where possible) or
    SciPy sparse matrices (as sparse COO tensors, split along axis 0), all of one length along
    `axis`: each batch holds `batch_size` consecutive samples of each (views, not copies;
    batch_size <= 0: one batch of everything), the order of the batches shuffled at the start
    and at each wrap-around. Each pass yields `iteration_size` batches (default: all) and
    continues where the previous pass stopped. With shuffle_samples=True the samples
    themselves are shuffled (as a DataLoader with shuffle=True), and batches are copies.

    `arrays` may instead be a callable returning a batch (a tensor or a sequence of them)
    each time it is called; a pass is then iteration_size calls (default 100).

    `rng` is None (torch's global generator), an int seed, a torch.Generator, or a NumPy
    generator (a seed is drawn from it).
    """

    def __init__(self, arrays, batch_size=32, iteration_size=None, axis=0, shuffle=True,
                 name=None, rng=None, shuffle_samples=False):
        if rng is not None and not isinstance(rng, (int, torch.Generator)):
            if hasattr(rng, "integers"):  # numpy.random.Generator
                rng = int(rng.integers(2**62))
            elif hasattr(rng, "randint"):  # numpy.random.RandomState, random.Random
                rng = int(rng.randint(0, 2**31 - 1))
            else:
                raise TypeError("rng must be None, an int seed, a torch.Generator or a NumPy "
                                f"generator, not {type(rng).__name__}")
        name = "data" if name is None else str(name)
        if callable(arrays) and not isinstance(arrays, torch.Tensor):
            generator = arrays

            def batch():
                return as_batch(generator())

            super().__init__(batch, batch_size, iteration_size, axis, shuffle, shuffle_samples,
                             name, rng)
        else:
            if isinstance(arrays, (torch.Tensor,)) or hasattr(arrays, "shape"):
                arrays = [arrays]
            super().__init__([as_tensor(a) for a in arrays], batch_size, iteration_size, axis,
                             shuffle, shuffle_samples, name, rng)

    def __repr__(self):
        return (f"Dataset(name={self.name!r}, batch_size={self.batch_size}, "
                f"iteration_size={self.iteration_size})")


def _batches(batches):
    """A callable that cycles through a list of fixed batches."""
    state = {"next": 0}

    def next_batch():
        batch = batches[state["next"] % len(batches)]
        state["next"] += 1
        return batch

    return next_batch


def as_dataset(data, name, batch_size, batches):
    """`data` as a Dataset: a Dataset as it is; a callable, called for each batch; a list of
    arrays, split into batches of `batch_size` (`batches` per pass, None: all); a list of lists,
    its elements the batches (the seed's `train=[[y]]`)."""
    if data is None or isinstance(data, _downhill._Dataset):
        return data
    if callable(data) and not isinstance(data, torch.Tensor):
        return Dataset(data, batch_size=batch_size, iteration_size=batches, name=name)
    if isinstance(data, (list, tuple)) and data and all(
            isinstance(item, (list, tuple)) for item in data):
        fixed = [as_batch(item) for item in data]
        return Dataset(_batches(fixed), iteration_size=batches or len(fixed), name=name)
    return Dataset(data, batch_size=batch_size, iteration_size=batches, name=name)
