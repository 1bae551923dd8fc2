package process

import "errors"

var errNoLimits = errors.New("process: limits are not supported yet")
