"""The claims: one module per claim, cNN_<name>.py, holding its hypothesis, derivation,
setup, measured quantity, prediction and pass rule (module docstring), and ``run``.

Installed as ``lorasim.theory``; ``lorasim-verify`` discovers the modules by name.
Index and status: theory/README.md.
"""
