"""Progress bars (progressbar2) on whatever sys.stderr is at the time they write."""

import sys

import progressbar


class _CurrentStderr:
    """Forwards to whatever sys.stderr is when written to.

    progressbar2 swaps a literal sys.stderr for the stream it saw at import; under pytest's
    capture or in notebooks that stream can be closed or stale by the time a bar runs.
    """

    def __getattr__(self, name):
        return getattr(sys.stderr, name)


def progress(iterable, prefix, least=0):
    """Iterates over `iterable` with a progressbar2 bar on the current sys.stderr (without a bar
    when it has fewer than `least` items).

    Args:
        iterable: a sized iterable.
        prefix: text before the bar, e.g. "Running network: ".
        least: below this many items, no bar.

    Returns:
        An iterator over the items of `iterable`.
    """
    if least and len(iterable) < least:
        return iter(iterable)
    return progressbar.progressbar(iterable, prefix=prefix, fd=_CurrentStderr())
