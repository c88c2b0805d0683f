"""Read models built only from events, each rebuildable from position 0."""
