"""Built-in dataset plugins (``mlcbench_register_datasets`` implementations)."""
