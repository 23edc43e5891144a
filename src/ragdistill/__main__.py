"""`python -m ragdistill` (and `accelerate launch -m ragdistill ...`)."""

from ragdistill.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
