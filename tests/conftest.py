"""Test-wide JAX set-up: CPU only, 8 fake devices, strict rank promotion, runtime shape checks.

The environment variables must be set before jax is imported anywhere, so this file sets them first.
"""

import os

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()

from jaxtyping import install_import_hook

# Runtime jaxtyping + beartype checks of every public signature in the library, in tests only.
install_import_hook("cat_jax", "beartype.beartype")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run one test with float64 enabled (float32 is the default elsewhere)."""
    with jax.enable_x64(True):
        yield


def pytest_configure(config):
    jax.config.update("jax_enable_x64", False)


try:  # hypothesis is a dev dependency; one fixed, derandomised profile keeps CI reproducible
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci", derandomize=True, max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass


@pytest.fixture(scope="session", autouse=True)
def _task_data_dir(tmp_path_factory):
    """One data dir per session where configs with ``task.data_dir = ""`` prepare their problems (inherited
    by the experiment processes tests start), instead of the user's ``~/.cache/cat_jax/tfds``."""
    old = os.environ.get("CAT_JAX_DATA_DIR")
    os.environ["CAT_JAX_DATA_DIR"] = str(tmp_path_factory.mktemp("tfds"))
    yield
    if old is None:
        os.environ.pop("CAT_JAX_DATA_DIR", None)
    else:
        os.environ["CAT_JAX_DATA_DIR"] = old
