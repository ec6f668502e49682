# dl_optim picks the Keras backend (torch when none is chosen and TensorFlow is absent) at import time, which must
# happen before any test module imports keras.
import dl_optim  # noqa: F401
import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))   # tests/routing_zoo.py
