"""mlcbench's built-in plugins, installed as the import package ``mlcbench_plugins``.

Each module registers through the ``mlcbench`` entry-point group exactly as a third-party
plugin would; the core never imports anything from here by name.
"""
