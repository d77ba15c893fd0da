"""trackspec: MusicGen music assets built from .trackspec files, like any other game asset."""

__version__ = "0.1.0"
