"""Suite-wide settings: hypothesis runs without deadlines (CI machines share two cores)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "dcb", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("dcb")
