"""pytest configuration shared by unit tests and notebooks.

Notebook cells are compared by nbval on their stdout and rich outputs. TensorFlow's C++ logger
writes to stderr before Python can silence it, and does so in some runs and not others, so
stderr is not compared for notebooks (see ../shared/CONVENTIONS.md, "Strict nbval with
TensorFlow"). Everything a notebook teaches goes to stdout or into an ``assert``.
"""


def pytest_collection_modifyitems(config, items):
    for item in items:
        skip = getattr(item.parent, "skip_compare", None)
        if skip is not None and "stderr" not in skip:
            item.parent.skip_compare = tuple(skip) + ("stderr",)
