"""Built-in loss plugins: base losses ``bce`` and ``focal``, the auxiliary ``any_class``."""
