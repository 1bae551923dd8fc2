"""An application that cannot be imported."""
import no_such_module_for_drover_tests  # noqa: F401


def application(environ, start_response):
    raise AssertionError('unreachable')
