"""Fixtures shared by the data tests that need the embedded (demo + smoke synthetic) data."""

import pytest

from pcrl_lib.data.demo import RegistryError
from pcrl_lib.data.embedded import prepare_embedded
from pcrl_lib.paths import cache_dir


@pytest.fixture(scope="session")
def shared_cache():
    """The shared cache with the demo data and the smoke look-alikes (cached: instant after the first run)."""
    try:
        prepare_embedded("smoke", log=lambda message: None)
    except RegistryError as err:  # no package registry and no cached demo data: nothing to test against
        pytest.skip(f"demo data unavailable (fetch failed: {err})")
    # Any other error (a bug in the readers or the look-alike writers, a damaged cache) fails the tests.
    return cache_dir()


@pytest.fixture(scope="module")
def embedded(shared_cache, tmp_path_factory):
    """A private PCRL_CACHE for the module: demo/ and synthetic/ link to the shared cache, prepared/ is new."""
    private = tmp_path_factory.mktemp("cache")
    for name in ("demo", "synthetic"):
        (private / name).symlink_to(shared_cache / name, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PCRL_CACHE", str(private))
        yield private
