"""The Pulumi side of ws: components and program (components.py, program.py import pulumi) plus the pure
parts they use (stackfiles.py: stack files; roles.py: database roles script; naming.py: names and probes).

Importing this package imports no pulumi; only the Pulumi program (infra/pulumi_program/) and the tests
import the program.
"""
