"""reader_study package."""
