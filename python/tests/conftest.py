"""Shared paths of the Python tests: the repository (MASSACT_SOURCE_DIR, set by ctest; else this checkout)."""
import os

import pytest

SOURCE = os.environ.get("MASSACT_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
DATA = os.path.join(SOURCE, "tests", "data")
MODELS = os.path.join(SOURCE, "examples", "models")


def data(*parts):
    return os.path.join(DATA, *parts)


def model_dir(name):
    return os.path.join(MODELS, name)


@pytest.fixture(scope="session")
def tiny_llama():
    import massact

    return massact.load(model_dir("tiny-llama"))


@pytest.fixture(scope="session")
def ref():
    import massact

    return massact.read_safetensors(data("tiny-llama.ref.safetensors"))
