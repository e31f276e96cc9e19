"""The 2,000-person second world, its tokenizer and its corpus, built once for the tests here."""

import pytest

from workbench.core.world.biographies import corpus
from workbench.core.world.bpe import build_bpe_tokenizer
from workbench.core.world.facts import make_world


@pytest.fixture(scope="session")
def world_v2():
    return make_world(version=2)


@pytest.fixture(scope="session")
def bpe_v2(world_v2):
    return build_bpe_tokenizer(world_v2)


@pytest.fixture(scope="session")
def corpus_v2(world_v2):
    return corpus(world_v2)
