"""``python -m l2l_omniglot`` is ``omnimeta``."""
from l2l_omniglot.cli import main

if __name__ == "__main__":
    main()
