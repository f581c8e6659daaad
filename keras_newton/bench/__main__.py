"""``python -m keras_newton.bench`` and the ``keras-newton-bench`` console script."""

import sys

from keras_newton.bench import main

if __name__ == "__main__":
    sys.exit(main())
