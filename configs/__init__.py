"""ml_collections config files: ``configs/<family>/<name>.py :: get_config(arg) -> ConfigDict``."""
