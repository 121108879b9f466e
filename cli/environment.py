"""Process environment changes that last only as long as the tool run that needs them."""

import os
from contextlib import contextmanager


@contextmanager
def temporary_environment(values: dict[str, str]):
    """``os.environ`` with ``values`` set inside the block; the caller's environment is restored after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
