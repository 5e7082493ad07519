"""Settings for the whole suite."""

from hypothesis import settings

# Speed is measured by the scripts in bench/, never by a test: hypothesis's per-example deadline (200 ms
# by default) fails properties on a loaded machine without saying anything about their behaviour.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")
