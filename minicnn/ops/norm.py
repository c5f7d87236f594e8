"""Placeholder: being written."""


def batch_norm(*args, **kwargs):
    raise NotImplementedError("batch_norm")
