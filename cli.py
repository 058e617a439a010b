#!/usr/bin/env python3
"""Run omnimeta from a checkout: ``python cli.py ...`` is ``omnimeta ...``."""
from l2l_omniglot.cli import main

if __name__ == "__main__":
    main()
