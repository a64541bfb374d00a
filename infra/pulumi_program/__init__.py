"""The Pulumi program's folder (Pulumi.yaml: ``main: infra/pulumi_program/``): Pulumi runs its ``__main__.py``.

Nothing imports this package; the program itself is :mod:`infra.stack.program` (what the tests drive under
``pulumi.runtime.set_mocks``), and ``__main__.py`` only wires it to the stack Pulumi selected.
"""
