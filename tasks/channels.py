"""Names of event channels besides a launch's own (which is the launch id)."""


def build_channel(build_id: str) -> str:
    """The shared stream of one build, read from its start by every launch that waits on it."""
    return f"build:{build_id}"
