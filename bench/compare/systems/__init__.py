"""One adapter per system (`open_system(settings, variant) -> System`) and its no-op task."""
