"""`python -m cli ...`: how the embedded stack runs the `billing` commands as child processes."""

from cli import main

main()
