"""`python -m infra.cli` runs the `ws` command (used by tests and by environments without the script)."""

from infra.cli import main

if __name__ == "__main__":
    main()
