"""common.application under wsgiref.validate, with its warnings as errors."""
import warnings
from wsgiref.validate import validator, WSGIWarning

import common

warnings.simplefilter('error', WSGIWarning)
application = validator(common.application)
