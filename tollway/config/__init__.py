"""Configuration: the file's schema and its loader."""

from tollway.config.loader import ConfigError, load_settings, provider_key_ids, settings_from_dict
from tollway.config.schema import Settings

__all__ = ["ConfigError", "Settings", "load_settings", "provider_key_ids", "settings_from_dict"]
