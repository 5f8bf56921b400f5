"""The demo tasks Conveyor runs out of the box: `conveyor worker --app examples.app:app`."""
